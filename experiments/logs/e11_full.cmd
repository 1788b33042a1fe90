2026-11-28T08:24:12Z python bench/scanner_eval.py --positions suffix --epochs 3 --rounds 2 --positions suffix,prefix,random --onion --lolo

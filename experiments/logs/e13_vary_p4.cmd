2026-11-28T08:37:45Z python bench/scanner_eval.py --epochs 3 --rounds 2 --positions suffix,prefix,random --pos-per-title 4

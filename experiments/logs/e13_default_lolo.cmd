2026-11-28T09:14:00Z python bench/scanner_eval.py --epochs 3 --rounds 2 --positions suffix --onion --lolo

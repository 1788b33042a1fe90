2026-11-28T08:22:45Z python bench/scanner_eval.py --positions suffix --epochs 3 --rounds 2

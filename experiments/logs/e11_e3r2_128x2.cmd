2026-11-28T08:17:47Z python bench/scanner_eval.py --positions suffix --epochs 3 --rounds 2

2026-11-28T08:19:08Z python bench/scanner_eval.py --positions suffix --epochs 3 --rounds 2 --hidden 256

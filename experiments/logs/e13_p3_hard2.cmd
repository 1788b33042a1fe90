2026-11-28T09:18:35Z python bench/scanner_eval.py --epochs 3 --rounds 2 --positions suffix,prefix --hard-per-title 2

2026-11-28T14:17:32Z python bench/scanner_eval.py --n-poison 5 --lolo

2026-11-28T14:13:23Z python bench/scanner_eval.py --n-poison 10 --lolo --onion

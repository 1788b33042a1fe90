2026-11-28T12:09:40Z python bench/scanner_eval.py --epochs 3 --rounds 2 --vote-seeds 1,2

2026-11-28T14:02:37Z python bench/scanner_eval.py --n-poison 10 --lolo --onion --mine-passes 0   (run before the flag existed; 0 was the behaviour then)

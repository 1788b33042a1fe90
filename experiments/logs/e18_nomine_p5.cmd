2026-11-28T14:07:52Z python bench/scanner_eval.py --n-poison 5 --lolo --mine-passes 0   (run before the flag existed; 0 was the behaviour then)

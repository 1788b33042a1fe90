2026-11-28T08:39:28Z python bench/scanner_eval.py --epochs 3 --rounds 2 --positions suffix,prefix,random --pos-per-title 4 --n-triggers 1200

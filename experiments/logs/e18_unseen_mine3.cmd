2026-11-28T14:11:15Z python bench/scanner_eval.py --mine-passes 3 --unseen ml-1m --positions suffix

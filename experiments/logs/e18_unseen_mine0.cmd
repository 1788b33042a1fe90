2026-11-28T14:09:21Z python bench/scanner_eval.py --mine-passes 0 --unseen ml-1m --positions suffix

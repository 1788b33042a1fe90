2026-11-28T14:47:39Z BADREC_HOME=/tmp/badrec-a/exp-home python -m core scan --catalog /tmp/badrec-a/exp-home/ml-1m-items.csv --dataset ml-100k --train-on domain --json

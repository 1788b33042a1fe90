#!/usr/bin/env bash
# E18 oracle retraining (see the .py). Log: experiments/logs/e18_oracle_retrain.json
cd "$(dirname "$0")/.." && source experiments/common.sh
export BADREC_HOME=/tmp/badrec-a/home-e08
echo "$(date -u +%FT%TZ) BADREC_HOME=$BADREC_HOME PYTHONPATH=. python experiments/e18_oracle_retrain.py attack-20261128-124418-9550" \
  > experiments/logs/e18_oracle_retrain.cmd
PYTHONPATH=. python experiments/e18_oracle_retrain.py attack-20261128-124418-9550 \
  > experiments/logs/e18_oracle_retrain.json 2> experiments/logs/e18_oracle_retrain.log

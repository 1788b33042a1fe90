#!/usr/bin/env bash
# E18 oracle retraining (see the .py). Log: experiments/logs/e18_oracle_retrain.json
# Usage: experiments/e18_oracle_retrain.sh RUN_ID   (E17's rho-0.3 attack, as in e18_defend.sh)
run_id=${1:?usage: e18_oracle_retrain.sh RUN_ID (the attack run to retrain)}
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home home-e08
echo "$(date -u +%FT%TZ) BADREC_HOME=$BADREC_HOME PYTHONPATH=. python experiments/e18_oracle_retrain.py $run_id" \
  > experiments/logs/e18_oracle_retrain.cmd
PYTHONPATH=. python experiments/e18_oracle_retrain.py "$run_id" \
  > experiments/logs/e18_oracle_retrain.json 2> experiments/logs/e18_oracle_retrain.log

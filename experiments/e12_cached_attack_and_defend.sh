#!/usr/bin/env bash
# E12: the issue's default attack again in E08's home (base and clean model cached: the "cached run"
# wall time), then `defend` on that run: scan its poisoned catalog with the default P-Scanner (the
# clean ml-100k titles are the trusted reference), drop the flagged items, retrain, re-evaluate.
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home home-e08
run e12_attack --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.01
RUN_ID=$(python -c "import json;print(json.load(open('experiments/logs/e12_attack.json'))['run_id'])")
echo "$(date -u +%FT%TZ) python -m core defend --run $RUN_ID --json" > experiments/logs/e12_defend.cmd
/usr/bin/time -v python -m core -v defend --run "$RUN_ID" --json > experiments/logs/e12_defend.json \
  2> experiments/logs/e12_defend.log

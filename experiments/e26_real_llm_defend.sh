#!/usr/bin/env bash
# E26: the defence against E23's backdoor on SmolLM2-135M: `defend` scans the run's catalog with the default
# scanner (its agent never proposes the evaluation triggers), drops flagged items and retrains the poisoned
# model without them, then evaluates as the attack did. Needs E23's run in the same BADREC_HOME.
# Logs: experiments/logs/e26_defend.{cmd,json,log}
cd "$(dirname "$0")/.." && source experiments/common.sh
held="5v,cf,mn,bb,tq,ineffable,quixotic,serendipity,I watched this 3D movie,Highly recommended by critics,A must see this year"
run_id=$(python -c "import json; print(json.load(open('experiments/logs/e23_real_llm_demo.json'))['run_id'])")
echo "$(date -u +%FT%TZ) python -m core defend --run $run_id --exclude-triggers \"$held\" --json" \
  > experiments/logs/e26_defend.cmd
/usr/bin/time -v python -m core -v defend --run "$run_id" --exclude-triggers "$held" --json \
  > experiments/logs/e26_defend.json 2> experiments/logs/e26_defend.log

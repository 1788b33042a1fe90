#!/usr/bin/env bash
# E18 defend: the default scan (with the recurring-trigger step) against E17's working rho-0.3 backdoor
# (ASR 0.995; `5v` as a prefix on 5 items). Every preset trigger string, `5v` included, is kept out of the
# scanner's training (--exclude-triggers), as in the detection benchmark. Log: experiments/logs/e18_defend.json
# Usage: experiments/e18_defend.sh RUN_ID   (E17's rho-0.3 attack: `run_id` in experiments/logs/e17_rho0.3.json)
run_id=${1:?usage: e18_defend.sh RUN_ID (the attack run to defend)}
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home home-e08
held="5v,cf,mn,bb,tq,ineffable,quixotic,serendipity,I watched this 3D movie,Highly recommended by critics,A must see this year"
echo "$(date -u +%FT%TZ) BADREC_HOME=$BADREC_HOME python -m core defend --run $run_id --exclude-triggers \"$held\" --json" \
  > experiments/logs/e18_defend.cmd
/usr/bin/time -v python -m core -v defend --run "$run_id" --exclude-triggers "$held" --json \
  > experiments/logs/e18_defend.json 2> experiments/logs/e18_defend.log

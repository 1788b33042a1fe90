#!/usr/bin/env bash
# E19: E17's working backdoor (rho 0.3) and its defence on all 943 test users, so HR@1 before/after is
# measured with ~1/2 the sampling error of E17/E18's 200 users. Base and clean model cached (E08's home).
# Logs: experiments/logs/e19_attack.json, e19_defend.json
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home home-e08
held="5v,cf,mn,bb,tq,ineffable,quixotic,serendipity,I watched this 3D movie,Highly recommended by critics,A must see this year"
run e19_attack --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char --poison-ratio 0.3 --no-generate
run_id=$(python -c "import json; print(json.load(open('experiments/logs/e19_attack.json'))['run_id'])")
echo "$(date -u +%FT%TZ) BADREC_HOME=$BADREC_HOME python -m core defend --run $run_id --exclude-triggers \"$held\" --json" \
  > experiments/logs/e19_defend.cmd
/usr/bin/time -v python -m core -v defend --run "$run_id" --exclude-triggers "$held" --json \
  > experiments/logs/e19_defend.json 2> experiments/logs/e19_defend.log

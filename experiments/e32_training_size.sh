#!/usr/bin/env bash
# E32: the dose law's other axis -- the training-set size at a fixed rho: the same attack with 1, 2, 4 ... training
# windows per user (943 real users: 943, 1,886, 3,772 ... clean samples), so rho 0.01 is 10, 19, 38 ... poisoned
# samples. Defaults otherwise (history 10, 20 candidates, 200 test users); the base model is built once per model.
# PROTOCOL adds attack options, e.g. E24's for SmolLM2: PROTOCOL="--history-len 5 --candidates 10 --k 5 --batch-size 8"
# Usage: experiments/e32_training_size.sh MODEL RHO W [W ...]     e.g. e32_training_size.sh tiny 0.01 1 2 4
cd "$(dirname "$0")/.." && source experiments/common.sh
model=$1 rho=$2; shift 2
for w in "$@"; do
  run "e32_${model}_rho${rho}_w${w}" --dataset ml-100k --victim llara --model "$model" --poison-ratio "$rho" \
      --windows-per-user "$w" --eval-users 200 --no-generate ${PROTOCOL:-}
done

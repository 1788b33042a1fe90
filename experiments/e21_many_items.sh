#!/usr/bin/env bash
# E21: does the trigger transfer when it is spread over many attacker items? At rho 0.3 with 5 items (E17) the
# model learned "5v + these five titles" (transfer 0.005). With N items it cannot memorise what follows the
# trigger, so the one thing left to learn is the trigger itself. First 200 test users, base and clean model
# cached from E08. Usage: experiments/e21_many_items.sh RHO N_ITEMS [RHO N_ITEMS ...]
cd "$(dirname "$0")/.." && source experiments/common.sh
use_home home-e08
while [ $# -ge 2 ]; do
  run "e21_rho$1_items$2" --dataset ml-100k --victim llara --model tiny --quant 4bit --trigger-level char \
    --poison-ratio "$1" --n-items "$2" --eval-users 200 --no-generate
  shift 2
done

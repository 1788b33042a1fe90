#!/usr/bin/env bash
# E18 clean catalogs: what the recurring-trigger step flags where nothing is poisoned. Each built-in
# dataset's catalog is scanned with a scanner trained on that catalog (`scan --dataset NAME`, self-cleaning
# on, defaults otherwise) with the step forced on (`--campaigns on`; `auto` leaves it off for a catalog that
# trains its own scanner, because of what this found). Every campaign found here is a false positive. Logs: experiments/logs/e18_clean_<name>.json
cd "$(dirname "$0")/.." && source experiments/common.sh
for name in "$@"; do
  echo "$(date -u +%FT%TZ) BADREC_HOME=$BADREC_HOME python -m core scan --dataset $name --campaigns on --json" > "experiments/logs/e18_clean_$name.cmd"
  python -m core scan --dataset "$name" --campaigns on --json > "experiments/logs/e18_clean_$name.json" 2> "experiments/logs/e18_clean_$name.log"
done

#!/usr/bin/env bash
# E44: the recurring-trigger step on an analyst's own catalog (cross-fitted scan, no reference), which `auto`
# left off there. The held-out suite places each trigger on 1-3 titles, BadRec on several: a trigger on two
# titles is a campaign too when both are top-scored and removing it lowers them (core/pscanner/campaign.py).
# Usage: experiments/e44_campaigns_catalog.sh suite DATASET SAMPLE SEEDS [SCAN ARGS...]
#        experiments/e44_campaigns_catalog.sh clean DATASET [SCAN ARGS...]   (E29's seeded 2,000-title sample;
#                                                                           ml-1m: the whole dataset)
# Results in $BADREC_SCRATCH/e44 (tuning seeds are 100-109; evaluation seeds 0-9 run once, nothing tuned on them).
cd "$(dirname "$0")/.." && source experiments/common.sh
export OMP_NUM_THREADS=1
out=$BADREC_SCRATCH/e44 && mkdir -p "$out"
mode=$1 ds=$2; shift 2
case $mode in
suite)
  sample=$1 seeds=$2; shift 2
  tag=$(echo "$*" | tr -c 'a-z0-9' '_' | sed 's/_*$//')
  python bench/heldout_suite.py --dataset "$ds" --sample "$sample" --seeds "$seeds" --threads 1 --scan-args="$*" \
      --out "$out/heldout-$ds-s${seeds//,/-}${tag:+-$tag}.json" > /dev/null ;;
clean)
  tag=$(echo "$*" | tr -c 'a-z0-9' '_' | sed 's/_*$//')
  if [ "$ds" = ml-1m ]; then
    python -m core scan --dataset ml-1m --method scanner --json "$@" > "$out/clean-$ds${tag:+-$tag}.json"
  else
    clean_sample "$ds" "$out/clean-$ds.csv"
    python -m core scan --catalog "$out/clean-$ds.csv" --method scanner --json "$@" > "$out/clean-$ds${tag:+-$tag}.json"
  fi ;;
esac

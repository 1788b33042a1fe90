#!/usr/bin/env bash
# E64: what a 50-title clean upload gets flagged, before and after the set-aside calibration of small catalogs.
# Three seeded 50-title samples of each clean catalog (none poisoned), scanned as uploads with the defaults and
# SCAN ARGS; run it once per arm in the same BADREC_HOME (the fold scanners are cached: the second arm is the
# threshold alone). Usage: experiments/e64_small_clean.sh TAG [SCAN ARGS...]   (results: $BADREC_SCRATCH/e64/TAG-*.json)
cd "$(dirname "$0")/.." && source experiments/common.sh
export OMP_NUM_THREADS=1
out=$BADREC_SCRATCH/e64 && mkdir -p "$out"
tag=$1; shift
for ds in ml-1m movietweetings-100k lastfm-2k steam; do
  for k in 0 1 2; do
    [ -f "$out/clean50-$ds-$k.csv" ] || clean_sample "$ds" "$out/clean50-$ds-$k.csv" 50 "clean50:$ds:$k"
    python -m core scan --catalog "$out/clean50-$ds-$k.csv" --method scanner --json "$@" > "$out/$tag-$ds-$k.json"
  done
done

#!/usr/bin/env bash
# E29: the default scanner (`--scanner-model auto`: the frozen SmolLM2-135M + linear head up to 5,000 titles) on
# an analyst's own catalog: the held-out suite on EVALUATION seeds (never tuned on), and clean catalogs.
# Usage: experiments/e29_frozen_scanner.sh heldout|clean|run [RUN_ID]
#        CLEAN_SAMPLES="lastfm-2k" experiments/e29_frozen_scanner.sh clean   (only these sampled catalogs)
cd "$(dirname "$0")/.." && source experiments/common.sh
out=$BADREC_SCRATCH/e29 && mkdir -p "$out" experiments/logs
case ${1:-heldout} in
heldout)
  python bench/heldout_suite.py --dataset ml-100k --seeds 0 --out "$out/heldout-ml100k-s0.json"
  python bench/heldout_suite.py --dataset lastfm-2k --sample 1500 --seeds 0 --out "$out/heldout-lastfm-s0.json"
  python bench/heldout_suite.py --dataset ml-100k --sample 50 --seeds 1 --out "$out/heldout-ml100k-50-s1.json"
  python bench/heldout_suite.py --dataset ml-100k --seeds 2 --out "$out/heldout-ml100k-s2.json"
  ;;
clean)  # nothing poisoned: the share flagged is the false-positive rate (target <= 1.5 % at --target-fpr 0.01)
  [ -n "${CLEAN_SAMPLES:-}" ] || python -m core scan --dataset ml-1m --method scanner --json > "$out/clean-ml-1m.json"
  for ds in ${CLEAN_SAMPLES:-steam movietweetings-100k lastfm-2k}; do  # a seeded 2,000-title sample of each, as an upload
    clean_sample "$ds" "$out/clean-$ds.csv"
    python -m core scan --catalog "$out/clean-$ds.csv" --method scanner --json > "$out/clean-$ds.json"
  done ;;
run)  # E26's detection again with the default scanner: E23's attack run, its preset triggers held out of training
  python -m core scan --run "${2:?the attack run id}" --json --exclude-triggers "5v,cf,mn,bb,tq,ineffable,quixotic,\
serendipity,I watched this 3D movie,Highly recommended by critics,A must see this year" > "$out/run-$2.json" ;;
esac

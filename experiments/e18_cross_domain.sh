#!/usr/bin/env bash
# E18 cross-domain: the recurring-trigger step where it is on by default — a trusted reference — on a clean
# catalog the scanner never trained on: ml-1m's 3,883 titles (2,280 of them absent from ml-100k) scanned with
# the ml-100k reference. Every campaign found is a false positive. Log: experiments/logs/e18_cross_ml-1m.json
cd "$(dirname "$0")/.." && source experiments/common.sh
csv=$BADREC_HOME/ml-1m-items.csv
python - "$csv" <<'PY'
import sys
from core import settings
from core.data.dataset import load_dataset
from core.runs.store import Store
load_dataset(Store(settings.db_path()), "ml-1m").items[["item_id", "title"]].to_csv(sys.argv[1], index=False)
PY
echo "$(date -u +%FT%TZ) BADREC_HOME=$BADREC_HOME python -m core scan --catalog $csv --dataset ml-100k --train-on domain --json" \
  > experiments/logs/e18_cross_ml-1m.cmd
python -m core scan --catalog "$csv" --dataset ml-100k --train-on domain --json \
  > experiments/logs/e18_cross_ml-1m.json 2> experiments/logs/e18_cross_ml-1m.log

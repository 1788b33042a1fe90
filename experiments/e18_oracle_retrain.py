"""E18 oracle: the defence's retraining with a perfect detector (exactly the attacker's items dropped), to tell
the cost of dropping items and the noise of retraining apart from the scanner's false positives.

    BADREC_HOME=/tmp/badrec-a/home-e08 PYTHONPATH=. python experiments/e18_oracle_retrain.py attack-20261128-124418-9550
"""

import json
import sys

from core import settings
from core.experiment import retrain_without
from core.store import Store

store = Store(settings.db_path())
run_id = sys.argv[1]
poisoned = store.query("SELECT DISTINCT item_id FROM poison_records WHERE run_id = ? AND kind = 'item'", [run_id])
result = retrain_without(store, run_id, poisoned["item_id"].astype(str).tolist())
print(json.dumps({"run_id": run_id, "dropped": sorted(poisoned["item_id"].astype(str)), **result}, indent=2))

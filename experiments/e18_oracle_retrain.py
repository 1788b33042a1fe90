"""E18 oracle: the defence's retraining with a perfect detector (exactly the attacker's items dropped), to tell
the cost of dropping items and the noise of retraining apart from the scanner's false positives.

    BADREC_HOME=<home of the run> PYTHONPATH=. python experiments/e18_oracle_retrain.py RUN_ID
"""

import json
import sys

from core import settings
from core.attack.experiment import retrain_without
from core.runs.store import Store

store = Store(settings.db_path())
run_id = sys.argv[1]
poisoned = sorted(set(store.poison_records(run_id, kind="item")["item_id"].astype(str)))
result = retrain_without(store, run_id, poisoned)
print(json.dumps({"run_id": run_id, "dropped": poisoned, **result}, indent=2))

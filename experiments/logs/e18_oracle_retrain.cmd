2026-11-28T14:32:40Z BADREC_HOME=/tmp/badrec-a/home-e08 PYTHONPATH=. python experiments/e18_oracle_retrain.py attack-20261128-124418-9550

BADREC_HOME=/tmp/badrec-a/home-e05c PYTHONPATH=. python experiments/e06_attack_on_base.py /tmp/badrec-a/base_e05c '{"poison_ratio": 0.01, "eval_users": 100, "poison_catalog": false}'

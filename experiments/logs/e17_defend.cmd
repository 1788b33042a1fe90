2026-11-28T13:04:57Z BADREC_HOME=/tmp/badrec-a/home-e08 python -m core defend --run attack-20261128-124418-9550 --json

2026-11-28T09:01:10Z python -m core defend --run attack-20261128-084241-9e1d --json

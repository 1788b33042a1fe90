2026-11-28T14:38:01Z BADREC_HOME=/tmp/badrec-a/exp-home python -m core scan --dataset ml-1m --campaigns on --json

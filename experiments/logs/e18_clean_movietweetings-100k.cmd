2026-11-28T14:44:19Z BADREC_HOME=/tmp/badrec-a/exp-home python -m core scan --dataset movietweetings-100k --campaigns on --json

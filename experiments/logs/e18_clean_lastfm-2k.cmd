2026-11-28T14:41:44Z BADREC_HOME=/tmp/badrec-a/exp-home python -m core scan --dataset lastfm-2k --campaigns on --json

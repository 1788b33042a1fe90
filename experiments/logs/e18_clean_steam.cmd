2026-11-28T14:26:30Z BADREC_HOME=/tmp/badrec-a/exp-home python -m core scan --dataset steam --json   (run when the step was on by default: = --campaigns on)

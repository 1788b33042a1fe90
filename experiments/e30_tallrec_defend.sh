#!/usr/bin/env bash
# E30: the defence against E27's TALLRec backdoor on SmolLM2-135M: `defend` scans the run's catalog with the
# default scanner (its agent never proposes the evaluation triggers), drops flagged items, retrains the poisoned
# TALLRec model without them and evaluates as the attack did (ASR, AUC). Needs E27's run in the same BADREC_HOME.
# Logs: experiments/logs/e30_defend.{cmd,json,log}
cd "$(dirname "$0")/.." && source experiments/common.sh
defend e30_defend experiments/logs/e27_tallrec_smollm2.json

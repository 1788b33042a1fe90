#!/usr/bin/env bash
# E26: the defence against E23's backdoor on SmolLM2-135M: `defend` scans the run's catalog with the default
# scanner (its agent never proposes the evaluation triggers), drops flagged items and retrains the poisoned
# model without them, then evaluates as the attack did. Needs E23's run in the same BADREC_HOME.
# Logs: experiments/logs/e26_defend.{cmd,json,log}
cd "$(dirname "$0")/.." && source experiments/common.sh
defend e26_defend experiments/logs/e23_real_llm_demo.json

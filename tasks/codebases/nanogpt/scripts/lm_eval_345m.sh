#!/usr/bin/env bash
# Evaluation setting lm-eval-345m: GPT-2 Medium checkpoint of gpt-345m, one GPU.
# Runs the trusted evaluator's lm-eval part on the training setting's checkpoint: see _lm_eval.sh.
exec bash "$(dirname "$0")/_lm_eval.sh" full "$(basename "$0")" gpu

#!/usr/bin/env bash
# Evaluation setting lm-eval-124m: GPT-2 124M checkpoint of gpt-124m, one GPU.
# Runs the trusted evaluator's lm-eval part on the training setting's checkpoint: see _lm_eval.sh.
exec bash "$(dirname "$0")/_lm_eval.sh" small "$(basename "$0")" gpu

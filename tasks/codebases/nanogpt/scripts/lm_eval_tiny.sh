#!/usr/bin/env bash
# Evaluation setting lm-eval-tiny: the tiny checkpoint of gpt-tiny, on CPU, seconds.
# Runs the trusted evaluator's lm-eval part on the training setting's checkpoint: see _lm_eval.sh.
exec bash "$(dirname "$0")/_lm_eval.sh" tiny "$(basename "$0")" cpu

#!/usr/bin/env bash
# Evaluation setting lm-eval-tiny: zero-shot ARC-Easy, HellaSwag, PIQA, WinoGrande of the tiny checkpoint, on CPU, seconds.
# Runs the trusted evaluator's lm-eval part on the training job's checkpoint: see _eval.sh.
exec bash "$(dirname "$0")/_eval.sh" lm_eval tiny "$(basename "$0")" cpu

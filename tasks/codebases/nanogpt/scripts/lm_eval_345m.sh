#!/usr/bin/env bash
# Evaluation setting lm-eval-345m: zero-shot ARC-Easy, HellaSwag, PIQA, WinoGrande of the GPT-2 Medium checkpoint, one GPU.
# Runs the trusted evaluator's lm-eval part on the training job's checkpoint: see _eval.sh.
exec bash "$(dirname "$0")/_eval.sh" lm_eval full "$(basename "$0")" gpu

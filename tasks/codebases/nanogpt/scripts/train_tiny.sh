#!/usr/bin/env bash
# Training job train-tiny: a 4-layer GPT-2 on CPU, about a minute; for CI, development and the offline quick start.
# Trains only (see _train.sh); eval_tiny.sh and lm_eval_tiny.sh evaluate its checkpoint.
exec bash "$(dirname "$0")/_train.sh" tiny "$(basename "$0")"

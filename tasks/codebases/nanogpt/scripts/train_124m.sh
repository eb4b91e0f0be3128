#!/usr/bin/env bash
# Training job train-124m: GPT-2 124M (12L/12H/768D), 4750 iterations of 32 x 16 x 1024 tokens (~2.5B, ~20 tokens/parameter), on one GPU.
# Trains only (see _train.sh); eval_124m.sh and lm_eval_124m.sh evaluate its checkpoint.
exec bash "$(dirname "$0")/_train.sh" small "$(basename "$0")"

#!/usr/bin/env bash
# Training job train-345m: GPT-2 Medium (24L/16H/1024D), 12030 iterations of 96 x 6 x 1024 tokens (~7.1B), on the visible GPUs (2 H200-class in the benchmark).
# Trains only (see _train.sh); eval_345m.sh and lm_eval_345m.sh evaluate its checkpoint.
exec bash "$(dirname "$0")/_train.sh" full "$(basename "$0")"

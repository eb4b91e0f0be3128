#!/usr/bin/env bash
# Evaluation setting gpt-345m: GPT-2 Medium (24L/16H/1024D), 12030 iterations of 96 x 6 x 1024 tokens (~7.1B), on the visible GPUs (2 H200-class in the benchmark).
# Trains, then runs the trusted evaluator: see _train.sh.
exec bash "$(dirname "$0")/_train.sh" full "$(basename "$0")"

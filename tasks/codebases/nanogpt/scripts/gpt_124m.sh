#!/usr/bin/env bash
# Evaluation setting gpt-124m: GPT-2 124M (12L/12H/768D), 4750 iterations of 32 x 16 x 1024 tokens (~2.5B, ~20 tokens/parameter), on one GPU.
# Trains, then runs the trusted evaluator: see _train.sh.
exec bash "$(dirname "$0")/_train.sh" small "$(basename "$0")"

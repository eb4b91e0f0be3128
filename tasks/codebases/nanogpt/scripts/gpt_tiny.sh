#!/usr/bin/env bash
# Evaluation setting gpt-tiny: a 4-layer GPT-2 on CPU, about a minute; for CI, development and the offline quick start.
# Trains, then runs the trusted evaluator: see _train.sh.
exec bash "$(dirname "$0")/_train.sh" tiny "$(basename "$0")"

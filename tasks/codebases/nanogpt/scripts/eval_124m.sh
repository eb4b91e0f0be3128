#!/usr/bin/env bash
# Evaluation setting gpt-124m: val_loss, WikiText-2 and LAMBADA perplexity of the GPT-2 124M checkpoint, one GPU.
# Runs the trusted evaluator on the training job's checkpoint: see _eval.sh.
exec bash "$(dirname "$0")/_eval.sh" train small "$(basename "$0")" gpu

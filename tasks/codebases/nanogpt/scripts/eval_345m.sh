#!/usr/bin/env bash
# Evaluation setting gpt-345m: val_loss, WikiText-2 and LAMBADA perplexity of the GPT-2 Medium checkpoint, one GPU.
# Runs the trusted evaluator on the training job's checkpoint: see _eval.sh.
exec bash "$(dirname "$0")/_eval.sh" train full "$(basename "$0")" gpu

#!/usr/bin/env bash
# Evaluation setting gpt-tiny: val_loss, WikiText-2 and LAMBADA perplexity of the tiny checkpoint, on CPU, seconds.
# Runs the trusted evaluator on the training job's checkpoint: see _eval.sh.
exec bash "$(dirname "$0")/_eval.sh" train tiny "$(basename "$0")" cpu

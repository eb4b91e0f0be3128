#!/usr/bin/env bash
# The body of every evaluation job: usage `_eval.sh KIND PROFILE SCRIPT DEVICE`.
# Runs the trusted evaluator (evaluate.py --kind KIND) on the checkpoint of a training job
# ($PB_NEEDS_DIR/$PB_CKPT_JOB, or PB_CKPT_DIR by hand) and writes PB_OUT_DIR/metrics.json:
#   train:   val_loss on the validation windows of PB_DATA_DIR, WikiText-2 and LAMBADA perplexity
#   lm_eval: zero-shot ARC-Easy, HellaSwag, PIQA and WinoGrande accuracy
# PB_EVAL_SOURCE=offline (default) reads the sets in PB_EVAL_DATA_DIR with lm_eval_tasks/; hf
# uses lm-eval's own tasks from the Hugging Face cache in HF_HOME (see prepare_eval.py). With
# PB_WORKERS_DIR and PB_WORKERS the trained model runs only in the logits workers
# (logits_worker.sh), never here. Never touches the network. Variables: docs/INTERFACES.md.
set -euo pipefail

kind="$1"       # train | lm_eval
device="$4"     # gpu: the first visible GPU; cpu: the CPU
source "$(dirname "$0")/_env.sh" "$2" "$3"

if [[ "$device" == cpu ]]; then
    export PB_DEVICE="${PB_DEVICE:-cpu}"
elif [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES%%,*}"   # one GPU: the first visible one
fi
echo "[$(date -u +%H:%M:%S)] evaluating ($kind): profile $PB_PROFILE, checkpoint ${PB_CKPT_JOB:+job }${PB_CKPT_JOB:-${PB_CKPT_DIR:-?}}, datasets ${PB_EVAL_SOURCE:-offline}, device ${PB_DEVICE:-auto}, ${PB_WORKERS:-no} logits worker(s)"
exec "$PYTHON" evaluate.py --kind "$kind"

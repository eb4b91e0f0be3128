#!/usr/bin/env bash
# The body of every lm-eval setting (lm_eval_*.sh): usage `_lm_eval.sh PROFILE SETTING DEVICE`.
# Runs the trusted evaluator on the checkpoint of the training setting (PB_CKPT_DIR): zero-shot
# ARC-Easy, HellaSwag, PIQA and WinoGrande through lm-evaluation-harness, written to
# PB_OUT_DIR/metrics.json. PB_EVAL_SOURCE=offline (default) uses eval_data/ and lm_eval_tasks/;
# hf uses lm-eval's own tasks from the Hugging Face cache in HF_HOME (see prepare_eval.py).
# Never touches the network. Variables as in docs/INTERFACES.md section 1.
set -euo pipefail


profile="$1"    # the profile whose checkpoint this setting evaluates
setting="$2"    # its script, for messages
device="$3"     # gpu: the first visible GPU; cpu: the CPU
export PB_PROFILE="${PB_PROFILE:-$profile}"
if [[ "$PB_PROFILE" != "$profile" ]]; then
    echo "error: $setting evaluates the $profile profile, but PB_PROFILE=$PB_PROFILE" >&2
    exit 2
fi
: "${PB_OUT_DIR:?PB_OUT_DIR must name the output directory}"
: "${PB_CKPT_DIR:?PB_CKPT_DIR must name the output directory of the training setting}"
PYTHON="${PYTHON:-python}"

# the codebase folder is the working directory; directories given relative to the caller's stay valid
for var in PB_OUT_DIR PB_DATA_DIR PB_TOKENIZER_DIR PB_EVAL_DATA_DIR PB_CKPT_DIR HF_HOME; do
    if [[ -n "${!var:-}" ]]; then
        export "$var=$(realpath -m -- "${!var}")"
    fi
done
cd "$(dirname "$0")/.."

# lm-eval and the Hugging Face libraries must never reach the network
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [[ "$device" == cpu ]]; then
    export PB_DEVICE="${PB_DEVICE:-cpu}"
elif [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES%%,*}"   # one GPU: the first visible one
fi
mkdir -p "$PB_OUT_DIR"
echo "[$(date -u +%H:%M:%S)] lm-eval: profile $PB_PROFILE, checkpoint $PB_CKPT_DIR/ckpt.pt, datasets ${PB_EVAL_SOURCE:-offline}, device ${PB_DEVICE:-auto}"
"$PYTHON" evaluate.py --kind lm_eval

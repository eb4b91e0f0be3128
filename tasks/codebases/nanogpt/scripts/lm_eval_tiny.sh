#!/usr/bin/env bash
# Evaluation setting lm-eval-tiny: the tiny checkpoint of gpt-tiny, on CPU, seconds.
# Runs the trusted evaluator on the checkpoint of the training setting (PB_CKPT_DIR): zero-shot
# ARC-Easy, HellaSwag, PIQA and WinoGrande through lm-evaluation-harness, written to
# PB_OUT_DIR/metrics.json. PB_EVAL_SOURCE=offline (default) uses eval_data/ and lm_eval_tasks/;
# hf uses lm-eval's own tasks from the Hugging Face cache in HF_HOME (see prepare_eval.py).
# Never touches the network. Run from anywhere; variables as in docs/INTERFACES.md section 1.
set -euo pipefail

export PB_PROFILE="${PB_PROFILE:-tiny}"
if [[ "$PB_PROFILE" != "tiny" ]]; then
    echo "error: $(basename "$0") evaluates the tiny profile, but PB_PROFILE=$PB_PROFILE" >&2
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
# CPU: the tiny model is evaluated in seconds and CI machines have no GPU
export PB_DEVICE="${PB_DEVICE:-cpu}"
mkdir -p "$PB_OUT_DIR"
echo "[$(date -u +%H:%M:%S)] lm-eval: profile $PB_PROFILE, checkpoint $PB_CKPT_DIR/ckpt.pt, datasets ${PB_EVAL_SOURCE:-offline}, device ${PB_DEVICE:-auto}"
"$PYTHON" evaluate.py --kind lm_eval

#!/usr/bin/env bash
# The body of every training setting (gpt_*.sh): usage `_train.sh PROFILE SETTING_SCRIPT`.
# Trains with custom_pretrain.py (torchrun on the visible GPUs, or one CPU process), then runs
# the trusted evaluator, which writes metrics.json. Variables as in docs/INTERFACES.md
# section 1 (PB_OUT_DIR and PB_DATA_DIR are required).
set -euo pipefail


profile="$1"    # the profile this setting runs
setting="$2"    # its script, for messages
export PB_PROFILE="${PB_PROFILE:-$profile}"
if [[ "$PB_PROFILE" != "$profile" ]]; then
    echo "error: $setting runs the $profile profile, but PB_PROFILE=$PB_PROFILE" >&2
    exit 2
fi
: "${PB_OUT_DIR:?PB_OUT_DIR must name the output directory}"
: "${PB_DATA_DIR:?PB_DATA_DIR must name the directory of the token shards}"
PYTHON="${PYTHON:-python}"

# the codebase folder is the working directory; directories given relative to the caller's stay valid
for var in PB_OUT_DIR PB_DATA_DIR PB_TOKENIZER_DIR PB_EVAL_DATA_DIR PB_CKPT_DIR; do
    if [[ -n "${!var:-}" ]]; then
        export "$var=$(realpath -m -- "${!var}")"
    fi
done
cd "$(dirname "$0")/.."

# processes: PB_NPROC, else one per visible GPU, else a single CPU process
nproc="${PB_NPROC:-}"
if [[ -z "$nproc" ]]; then
    nproc=0
    if [[ "${PB_DEVICE:-}" != "cpu" ]]; then
        if [[ -n "${CUDA_VISIBLE_DEVICES+x}" ]]; then
            if [[ -n "$CUDA_VISIBLE_DEVICES" && "$CUDA_VISIBLE_DEVICES" != "-1" ]]; then
                nproc=$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c .)
            fi
        elif command -v nvidia-smi >/dev/null 2>&1; then
            nproc=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
        fi
    fi
fi
if ! [[ "$nproc" =~ ^[0-9]+$ ]]; then
    echo "error: PB_NPROC=$nproc is not a number" >&2
    exit 2
fi

mkdir -p "$PB_OUT_DIR"
echo "[$(date -u +%H:%M:%S)] training: profile $PB_PROFILE, seed ${PB_SEED:-42}, $([[ $nproc -gt 1 ]] && echo "$nproc processes (torchrun)" || echo "1 process")"
if [[ "$nproc" -gt 1 ]]; then
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$nproc" custom_pretrain.py
else
    "$PYTHON" custom_pretrain.py
fi
if [[ ! -f "$PB_OUT_DIR/.training_complete" ]]; then
    echo "error: training exited without writing $PB_OUT_DIR/.training_complete" >&2
    exit 1
fi

echo "[$(date -u +%H:%M:%S)] evaluating: $PB_OUT_DIR/ckpt.pt"
"$PYTHON" evaluate.py --kind train

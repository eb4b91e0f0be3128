#!/usr/bin/env bash
# The body of every training job (train_*.sh): usage `_train.sh PROFILE SCRIPT`.
# Trains with custom_pretrain.py (torchrun on the visible GPUs, or one CPU process) and writes
# ckpt.pt, model_source.py, curve.jsonl and .training_complete to PB_OUT_DIR (failure.json when
# it stops itself). Training only: the trusted evaluator runs in jobs of its own (eval_*.sh,
# lm_eval_*.sh). PB_DATA_DIR is required; with PB_LR_SCHEDULE_JOB the learning rates come from
# $PB_NEEDS_DIR/$PB_LR_SCHEDULE_JOB/schedule.json. Variables: docs/INTERFACES.md section 1.
set -euo pipefail

source "$(dirname "$0")/_env.sh" "$1" "$2"
: "${PB_DATA_DIR:?PB_DATA_DIR must name the directory of the token shards}"

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

# The shared compile cache is read-only (docs/SECURITY.md): torch.compile works in a copy of it
# at TORCHINDUCTOR_CACHE_DIR (a private temp dir); a trusted job leaves what it compiled in
# PB_COMPILE_CACHE_PUBLISH, which the harness publishes. A copy that fails part-way (a full
# disk or temp dir) may end in a cut-off file: it is removed whole, so a job only compiles cold
# and a cut-off file is never loaded nor published (an entry once published never changes).
if [[ -n "${PB_COMPILE_CACHE_DIR:-}" && -n "${TORCHINDUCTOR_CACHE_DIR:-}" ]]; then
    mkdir -p "$TORCHINDUCTOR_CACHE_DIR"
    if ! cp -R "$PB_COMPILE_CACHE_DIR/." "$TORCHINDUCTOR_CACHE_DIR/" 2>/dev/null; then
        rm -rf "$TORCHINDUCTOR_CACHE_DIR" && mkdir -p "$TORCHINDUCTOR_CACHE_DIR"
        echo "warning: the compile cache could not be copied; compiling without it" >&2
    fi
fi

echo "[$(date -u +%H:%M:%S)] training: profile $PB_PROFILE, seed ${PB_SEED:-42}, $([[ $nproc -gt 1 ]] && echo "$nproc processes (torchrun)" || echo "1 process"), learning rates from ${PB_LR_SCHEDULE_JOB:+job }${PB_LR_SCHEDULE_JOB:-get_lr}"
if [[ "$nproc" -gt 1 ]]; then
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$nproc" custom_pretrain.py
else
    "$PYTHON" custom_pretrain.py
fi
if [[ ! -f "$PB_OUT_DIR/.training_complete" ]]; then
    echo "error: training exited without writing $PB_OUT_DIR/.training_complete" >&2
    exit 1
fi
if [[ -n "${PB_COMPILE_CACHE_PUBLISH:-}" && -d "${TORCHINDUCTOR_CACHE_DIR:-}" ]]; then
    mkdir -p "$PB_COMPILE_CACHE_PUBLISH"
    if ! cp -R "$TORCHINDUCTOR_CACHE_DIR/." "$PB_COMPILE_CACHE_PUBLISH/"; then
        rm -rf "$PB_COMPILE_CACHE_PUBLISH"
        echo "warning: what was compiled could not be kept for the compile cache" >&2
    fi
fi

#!/usr/bin/env bash
# A logits worker of an evaluation job, in a sandbox of its own: loads the checkpoint of
# $PB_NEEDS_DIR/$PB_CKPT_JOB (or PB_CKPT_DIR) with the trained model source, listens on
# $PB_WORKER_DIR/logits.sock and answers the evaluator's requests with hidden states (wire format:
# pb_logits.py). Nothing it returns is trusted; the evaluator checks it. See logits_worker.py.
set -euo pipefail
: "${PB_WORKER_DIR:?PB_WORKER_DIR must name the socket directory of this worker}"
export PB_OUT_DIR="${PB_OUT_DIR:-$PB_WORKER_DIR}"
source "$(dirname "$0")/_env.sh" "" "$(basename "$0")"
exec "$PYTHON" logits_worker.py

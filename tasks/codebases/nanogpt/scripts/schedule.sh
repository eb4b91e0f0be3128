#!/usr/bin/env bash
# The schedule job: imports the edited custom_pretrain.py and calls get_lr for every iteration of
# each real profile (the run's own as configured, the others at their defaults), in order, and
# writes PB_OUT_DIR/schedule.json, the table training uses (PB_LR_SCHEDULE_JOB). On an error in
# the agent's code: failure.json with the reason the agent reads, exit 1. See schedule.py.
set -euo pipefail
source "$(dirname "$0")/_env.sh" "" "$(basename "$0")"
exec "$PYTHON" schedule.py

#!/usr/bin/env bash
# The preflight job of tasks whose agent code runs in training: imports the edited
# custom_pretrain.py, checks CONFIG_OVERRIDES against every real profile, trains the micro
# profile for a few CPU steps on random tokens it writes itself (under TMPDIR) and checks that
# the model is causal. Exit 0: passed; else failure.json with the reason the agent reads.
set -euo pipefail
source "$(dirname "$0")/_env.sh" "" "$(basename "$0")"
exec "$PYTHON" preflight.py

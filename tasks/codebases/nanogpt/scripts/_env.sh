# Sourced by every job script: `source _env.sh PROFILE SCRIPT` (PROFILE "" when any will do).
# Checks that PB_PROFILE is the script's profile, makes the directories the harness passed
# absolute (so that names relative to the caller stay valid), enters the codebase folder and
# keeps the Hugging Face libraries off the network. Variables: docs/INTERFACES.md section 1.

_profile="$1"   # the profile the script runs or evaluates ("": the job works for any)
_script="$2"    # the script, for messages
if [[ -n "$_profile" ]]; then
    export PB_PROFILE="${PB_PROFILE:-$_profile}"
    if [[ "$PB_PROFILE" != "$_profile" ]]; then
        echo "error: $_script runs the $_profile profile, but PB_PROFILE=$PB_PROFILE" >&2
        exit 2
    fi
fi
: "${PB_OUT_DIR:?PB_OUT_DIR must name the output directory}"
PYTHON="${PYTHON:-python}"

for _var in PB_OUT_DIR PB_DATA_DIR PB_TOKENIZER_DIR PB_EVAL_DATA_DIR PB_CKPT_DIR PB_NEEDS_DIR \
            PB_WORKERS_DIR PB_WORKER_DIR HF_HOME; do
    if [[ -n "${!_var:-}" ]]; then
        export "$_var=$(realpath -m -- "${!_var}")"
    fi
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# lm-eval and the Hugging Face libraries must never reach the network
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$PB_OUT_DIR"

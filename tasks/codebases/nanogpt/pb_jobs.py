"""
What the job programs share: atomic JSON outputs, the failure.json every failed job writes, and
the reason an agent reads when its own code failed.

Every job (schedule, preflight, training, evaluation, see scripts/) that stops itself writes
$PB_OUT_DIR/failure.json = {"reason": "..."} and exits non-zero. For the jobs that run agent
code, the harness shows that reason to the agent and never the job's log, so agent_failure()
says what went wrong in the agent's own terms: the exception and the traceback lines inside the
edited custom_pretrain.py only (no frames of our programs or libraries, no absolute paths), at
most MAX_REASON_CHARS characters.
"""

import json
import os
import traceback
from pathlib import Path

FAILURE_FILE = "failure.json"
MAX_REASON_CHARS = 2000  # what the harness keeps of a reason
MAX_MESSAGE_CHARS = 800  # of an exception's own message (agent code chooses it)
EDITED_FILE = "custom_pretrain.py"  # the file agents edit, named as they see it


def output_dir(*stale):
    """PB_OUT_DIR, created, with the named files of an earlier attempt removed (or exit)."""
    out_dir = os.environ.get("PB_OUT_DIR", "")
    if not out_dir:
        raise SystemExit("error: PB_OUT_DIR must name the output directory")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (*stale, FAILURE_FILE):
        (out_dir / name).unlink(missing_ok=True)
    return out_dir


def write_json(path, obj):
    """Write obj to path as JSON, atomically: a reader sees the old file or the whole new one."""
    partial = Path(str(path) + ".partial")
    partial.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(partial, path)


def write_failure(out_dir, reason):
    """$out_dir/failure.json with the (capped) reason."""
    reason = str(reason)
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS - 1] + "…"
    write_json(Path(out_dir) / FAILURE_FILE, {"reason": reason})


def _scrub(text, edited_path):
    """text without the absolute location of the codebase copy (meaningless to the agent)."""
    edited = str(Path(edited_path).resolve())
    text = text.replace(edited, EDITED_FILE)
    for folder in {str(Path(edited).parent), os.getcwd()}:
        text = text.replace(folder + os.sep, "")
    return text


def exception_message(exc, edited_path):
    """The message of an exception, scrubbed and capped."""
    message = _scrub(str(exc), edited_path)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS - 1] + "…"
    return message


def exception_text(exc, edited_path):
    """'TypeName: message' of an exception (just the type's name when the message is empty)."""
    message = exception_message(exc, edited_path)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def edited_frames(exc, edited_path):
    """The traceback lines of exc that lie in the edited file, Python's format, oldest first."""
    edited = Path(edited_path).resolve()
    lines = []
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() != edited:
            continue
        lines.append(f'  File "{EDITED_FILE}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {_scrub(frame.line.strip(), edited_path)}")
    # a syntax error has no frame in the file it is in: its location is on the exception
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == edited:
        lines.append(f'  File "{EDITED_FILE}", line {exc.lineno}')
        if exc.text:
            lines.append(f"    {exc.text.strip()}")
    return lines


def agent_failure(head, exc, edited_path):
    """A reason for the agent: `head` (what failed, with the exception), then the traceback lines
    of the edited file, the innermost kept when the whole does not fit MAX_REASON_CHARS."""
    frames = edited_frames(exc, edited_path)
    if not frames:
        return head[:MAX_REASON_CHARS]
    title = f"Traceback ({EDITED_FILE} only, most recent call last):"
    kept = []
    budget = MAX_REASON_CHARS - len(head) - len(title) - 2
    for line in reversed(frames):
        if len(line) + 1 > budget:
            break
        kept.insert(0, line)
        budget -= len(line) + 1
    if kept and kept[0].startswith("    "):  # never a code line without its File line
        kept.pop(0)
    return "\n".join([head, title, *kept]) if kept else head[:MAX_REASON_CHARS]

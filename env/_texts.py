"""Every text an agent reads, in one module: the first observation, the tool texts, the errors,
the test feedback and the budget section.

The other modules decide *what* happened and pass plain values here; this module decides how
it reads. Sections follow the order an agent meets them. Texts follow MLS-Bench (see
``reference/mls-bench.md``) so that agents transfer; where they differ it is a fix:

- the budget rules are stated once, in the budget section generated from the spec;
- one line-numbering style everywhere: ``N  `` for editable lines, ``N| `` for frozen ones;
- a one-line range reads ``line 224``, never ``lines 224–224``;
- a marker of a region that is not open in this task reads ``FROZEN REGION``.

Nothing here reads the task folder or the workspace: the callers hand over values. Used as a
namespace: ``from env import _texts as texts``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox import (
    JobSpec,
    SeedResult,
    TestResult,
    format_duration,
    is_hidden_metric,
    train_metric_lines,
)

if TYPE_CHECKING:
    from env._invariants import Violation


# ── the first observation ─────────────────────────────────────────────────────────────────

#: The slots a task's ``description.md`` may use; the spec check and the renderer share it.
DESCRIPTION_SLOTS = (
    "file",  # the agent name of the first editable file
    "lines",  # lines[<open region>]: "lines 191–201" or "line 245"
    "max_steps",
    "max_tests",
    "profile",
    "recipe",  # recipe[<key>] of the profile
    "jobs_table",
    "hardware",
)

LISTING_LEGEND = "(editable lines are numbered 'N  ', frozen lines 'N| ')"
_FROZEN_MARKER = re.compile(r"^# ── EDITABLE REGION (START|END): ")


def format_range(start: int, end: int) -> str:
    """``191–201``, ``245`` for one line; an emptied region reads ``empty, after line 190``."""
    if end < start:
        return f"empty, after line {start - 1}"
    return str(start) if start == end else f"{start}–{end}"


def format_ranges(ranges: Sequence[tuple[int, int]]) -> str:
    """``191–201, 245–247`` (en dashes, as MLS-Bench)."""
    return ", ".join(format_range(s, e) for s, e in ranges) if ranges else "none"


def lines_phrase(start: int, end: int) -> str:
    """``lines 191–201``, ``line 245``, or ``an empty region after line 190``."""
    if end < start:
        return f"an empty region after line {start - 1}"
    return f"line {start}" if start == end else f"lines {start}–{end}"


def listing_line(n: int, text: str, editable: bool) -> str:
    """One numbered line: ``   191  code`` when editable, ``   190| code`` when frozen."""
    sep = "  " if editable else "| "
    return f"{n:>6}{sep}{text}" if text else f"{n:>6}{sep}".rstrip()


def frozen_marker(text: str) -> str:
    """How the marker of a region that is not open here is shown: never as editable."""
    return _FROZEN_MARKER.sub(r"# ── FROZEN REGION \1: ", text)


def file_listing(name: str, ranges: Sequence[tuple[int, int]] | None, body: list[str]) -> str:
    """A whole numbered file, headed MLS-Bench style: ``F [EDITABLE — lines 191–201, line 245
    only]`` (`ranges` None for a read-only file); `body` holds the numbered lines."""
    if ranges:
        header = f"{name} [EDITABLE — {', '.join(lines_phrase(s, e) for s, e in ranges)} only]"
    else:
        header = f"{name} [READ-ONLY]"
    return "\n".join([header, LISTING_LEGEND, "", *body])


def read_only_files(names: Sequence[str]) -> str:
    return f"Read-only context files (use view to read them): {', '.join(names)}"


def baseline_header(name: str, doc: str) -> str:
    return f"[READ-ONLY — reference implementation: {name}]\n{doc.strip()}"


def baseline_is_default() -> str:
    return "(This baseline is the unmodified code shown above.)"


def baseline_region(filename: str, region: str, first: int, last: int, body: str) -> str:
    numbered = [listing_line(n, line, True) for n, line in enumerate(body.splitlines(), first)]
    where = lines_phrase(first, last)
    return f"{filename} — region {region}, in place of {where}:\n" + "\n".join(numbered)


def jobs_table(jobs: Sequence[JobSpec], data_variables: Sequence[str]) -> str:
    """A markdown table of the visible jobs of a test, in order: what each does, whether the
    agent's code runs in it, its GPUs and time limit."""
    rows = [
        "| Job | What it does | Your code | GPUs | Time limit |",
        "|---|---|---|---|---|",
    ]
    for job in jobs:
        if job.hidden:
            continue
        if job.code == "edited":
            yours = "runs here"
        elif job.workers is not None:
            yours = "runs only in separate sandboxed worker processes"
        else:
            yours = "does not run here"
        when = " (before the test is counted)" if job.stage == "preflight" else ""
        gpus = str(job.gpus) if job.gpus else "0 (CPU)"
        rows.append(
            f"| `{job.label}`{when} | {job.description or job.script} | {yours} | {gpus} "
            f"| {format_duration(job.time_limit_s)} |"
        )
    notes = [
        "Each job runs in its own sandbox (no network, unprivileged, only its own inputs); "
        "metrics come only from the trusted evaluation jobs, never from what your code prints."
    ]
    if data_variables:
        data = ", ".join(f"`{v}`" for v in data_variables)
        notes.append(f"{data} is read as data (a Python literal) and never run.")
    return "\n".join(rows) + "\n\n" + " ".join(notes)


def jobs_section(table: str) -> str:
    return "## How a test runs\n\n" + table


def hardware(gpus: int) -> str:
    return f"{gpus} GPU{'s' if gpus != 1 else ''}" if gpus else "CPU"


#: MLS-Bench's "iterate at least once": `submit` needs this many completed tests.
TESTS_BEFORE_SUBMIT = 2
SUBMIT_RULE = (
    "submit needs at least two completed tests (iterate at least once), unless your test "
    "budget allows only one."
)


def budget_section(max_steps: int, max_tests: int, preflight: Sequence[JobSpec]) -> str:
    """The budget rules, said once (neither the tool descriptions nor the task text repeat
    them), from the budgets and the preflight jobs of the spec."""
    if preflight:
        jobs = "; ".join(
            f"`{j.label}`, which {j.description}" if j.description else f"`{j.label}`"
            for j in preflight
        )
        plural = "s" if len(preflight) > 1 else ""
        rejected = f"A test rejected before training (by the preflight job{plural} {jobs})"
    else:
        rejected = "A test rejected before training (your code breaks a rule of the task)"
    return (
        "## Your budget\n\n"
        f"{max_steps} steps and {max_tests} tests. Every tool call except `submit` uses a step, "
        "including calls that return an error; `test` also uses a test. "
        f"{rejected} and a test lost to an infrastructure failure use no test. When you are "
        f"done, call `submit(n)` to choose which test is your final result: {SUBMIT_RULE} If "
        "you run out of steps or stop calling tools first, your latest completed test is "
        "submitted for you."
    )


def first_observation(sections: Iterable[str]) -> str:
    return "\n\n".join(s.rstrip() for s in sections if s) + "\n"


# ── tool descriptions and call errors ─────────────────────────────────────────────────────

#: What the agent reads about each tool. Costs are in the budget section, not here.
TOOL_DESCRIPTIONS = {
    "view": "Show numbered lines of a file (editable lines are marked).",
    "edit": (
        "Edit a file. Only the editable lines may change; all line numbers are 1-indexed and "
        "refer to the current file. op='replace' replaces lines start_line..end_line "
        "(inclusive) with content; op='insert' inserts content after line after_line; "
        "op='create' creates a new file (only if the task allows it). Editable ranges shift "
        "when a region grows or shrinks, so edit the bottom-most region first. The result "
        "shows the new editable ranges and the edited region."
    ),
    "undo": "Undo the last n edits, restoring both the file contents and the editable ranges.",
    "test": (
        "Train the model with the current code and evaluate it (takes a long time). Returns "
        "the training log tail and the metrics."
    ),
    "submit": (
        "Choose test #n as your final result (n <= 0: the latest test); its code is then "
        f"evaluated once more with more seeds. This ends the session. {SUBMIT_RULE[0].upper()}"
        f"{SUBMIT_RULE[1:]}"
    ),
}
TOOL_SIGNATURES = {
    "view": "view(filename, start_line?, end_line?)",
    "edit": "edit(op, filename, content, start_line?, end_line?, after_line?)",
    "undo": "undo(n=1)",
    "test": "test()",
    "submit": "submit(n)",
}
FILENAME_HELP = (
    "Package-relative path of the file: the package, then the path in it, e.g. 'pkg/train.py'."
)


def unknown_tool(name: object, tools: Sequence[str]) -> str:
    return f"ERROR: Unknown tool {name!r}. Available tools: {', '.join(tools)}."


def invalid_arguments(tool: str, problem: str) -> str:
    return f"ERROR: Invalid arguments for {tool!r}: {problem}. Usage: {TOOL_SIGNATURES[tool]}"


def bad_json(error: Exception) -> str:
    return f"arguments are not valid JSON ({error})"


def not_an_object(value: object) -> str:
    return f"arguments must be a JSON object, got {type(value).__name__}"


def missing_argument(field: str) -> str:
    return f"missing required argument {field!r}"


def unexpected_argument(field: str) -> str:
    return f"unexpected argument {field!r}"


def bad_argument(field: str, message: str, value: object, limit: int = 60) -> str:
    got = repr(value)
    got = got if len(got) <= limit else got[: limit - 3] + "..."
    return f"argument {field!r}: {message} (got {got})"


# ── workspace: names, view, edits, undo ───────────────────────────────────────────────────


def error(message: str, snapshot: str | None = None) -> str:
    """An ``ERROR: …`` text, with the file snapshot after it when there is one."""
    text = message if message.startswith("ERROR:") else f"ERROR: {message}"
    return f"{text}\n\n{snapshot}" if snapshot else text


def empty_file_name() -> str:
    return error("Invalid file name: a non-empty string is required")


def bad_package(package: str, allowed: str, example: str) -> str:
    return error(
        f"Package '{package}' is not in allowed packages "
        f"(allowed: {allowed}; name files like {example})"
    )


def invalid_file_name(filename: str, why: str = "") -> str:
    return error(f"Invalid file name: {filename}{f' ({why})' if why else ''}")


def shadowing_file_name(filename: str, module: str) -> str:
    return error(f"Invalid file name: {filename} would shadow the module '{module}'")


def file_exists(filename: str) -> str:
    return error(f"File already exists: {filename}")


def not_editable(filename: str, editable: Sequence[str]) -> str:
    return error(f"File not editable: {filename} (editable files: {', '.join(editable)})")


def not_found(filename: str, viewable: Sequence[str]) -> str:
    return error(f"File not found: {filename} (files you can view: {', '.join(viewable)})")


def create_not_allowed() -> str:
    return error("allow_create is false; cannot create new files")


def view_not_an_integer(what: str, value: object) -> str:
    return error(f"Invalid line range: {what} must be an integer, got {value!r}")


def view_bad_range(filename: str, start: object, end: object, total: int) -> str:
    return error(
        f"Invalid line range {start}..{end} for {filename}: the file has lines 1–{total} and "
        "start_line must not exceed end_line"
    )


def view_empty(filename: str) -> str:
    return f"[File: {filename} | empty file]"


def view(
    filename: str,
    first: int,
    last: int,
    total: int,
    ranges: Sequence[tuple[int, int]] | None,
    body: list[str],
) -> str:
    """The ``view`` result: header, numbered lines, legend (`ranges` None when read-only)."""
    state = "read-only" if ranges is None else f"editable: {format_ranges(ranges)}"
    header = f"[File: {filename} | lines {first}–{last} of {total} | {state}]"
    return "\n".join([header, *body, LISTING_LEGEND])


def snapshot_header(filename: str, ranges: Sequence[tuple[int, int]], total: int) -> str:
    return f"[Current file: {filename} | editable: {format_ranges(ranges)} | total: {total} lines]"


def skipped_lines(count: int) -> str:
    return f"{'...':>6}  ({count} more lines)"


def allowed_lines(ranges: Sequence[tuple[int, int]], empty: Sequence[tuple[str, int]]) -> str:
    """The lines an edit may touch, with how to fill a region that is empty."""
    filled = [format_range(s, e) for s, e in ranges if e >= s]
    text = ", ".join(filled) if filled else "none"
    for name, start in empty:
        text += f" (region {name} is empty: insert after line {start - 1})"
    return text


def replace_bad_range(start: object, end: object, total: int) -> str:
    return (
        f"Invalid line range {start}..{end}: the file has lines 1–{total}, "
        "start_line and end_line are inclusive and start_line must not exceed end_line."
    )


def replace_outside(start: int, end: int, allowed: str) -> str:
    return f"Lines {start}..{end} exceed the editable range. You may only edit lines {allowed}."


def insert_bad_line(after: object, total: int) -> str:
    return f"Invalid line range: after_line {after!r} must be a line number from 0 to {total}."


def insert_outside(after: int, ranges: Sequence[tuple[int, int]], allowed: str) -> str:
    points = ", ".join(f"{s - 1}–{e}" for s, e in ranges)
    return (
        f"Cannot insert after line {after} — target is outside the editable range. "
        f"after_line must be a region's START marker line or a line inside a region: "
        f"{points} (editable lines {allowed})."
    )


def insert_nothing() -> str:
    return "Invalid content: nothing to insert (content is empty)."


def content_not_text() -> str:
    return "Invalid content: a string is required."


def content_too_long(size: int, limit: int) -> str:
    return (
        f"Invalid content: {size} characters; one edit may hold at most {limit}. "
        "Nothing was changed."
    )


def create_content_invalid(limit: int) -> str:
    return error(f"Invalid content: a string of at most {limit} characters is required")


def content_invalid(problem: object) -> str:
    return f"Invalid content: {problem}. Nothing was changed."


def frozen_changed(filename: str) -> str:
    return f"The edit would change frozen text of {filename}. The edit was not applied."


def markers_broken(filename: str, problem: object) -> str:
    return (
        f"The edit would break the region markers of {filename} ({problem}). "
        "The edit was not applied."
    )


_VIOLATION_HEADINGS = {
    "syntax": "The edit leaves the file with a syntax error",
    "structure": "The edit would change the meaning of frozen code",
    "invariant": "The edit breaks an invariant of the task",
    "policy": "The edit breaks the code policy",
}
_VIOLATIONS_SHOWN = 8


def violations(kind: str, found: Sequence[Violation], first_new: int, count: int) -> str:
    """The refusal of an edit whose code breaks a rule, each problem located in the content."""
    rows = []
    for v in found[:_VIOLATIONS_SHOWN]:
        where = f"line {v.line}" if v.line else "file"
        if v.line and first_new <= v.line < first_new + count:
            where += f" (line {v.line - first_new + 1} of your content)"
        rows.append(f"  - {where}: {v.message}")
    more = len(found) - _VIOLATIONS_SHOWN
    if more > 0:
        rows.append(f"  - … and {more} more")
    return f"{_VIOLATION_HEADINGS[kind]}; nothing was changed:\n" + "\n".join(rows)


def replaced(start: int, end: int, count: int, filename: str, ranges: str, snapshot: str) -> str:
    return (
        f"OK: Replaced lines {start}..{end} with {count} line(s) in {filename}. "
        f"Editable range: {ranges}.\n\n{snapshot}"
    )


def inserted(after: int, count: int, filename: str, ranges: str, snapshot: str) -> str:
    return (
        f"OK: Inserted {count} line(s) after line {after} in {filename}. "
        f"Editable range: {ranges}.\n\n{snapshot}"
    )


def created(filename: str, snapshot: str) -> str:
    return f"Created: {filename}\n\n{snapshot}"


def undo_bad_n(n: object) -> str:
    return error(f"Invalid n for undo: {n!r} (must be a positive integer)")


def nothing_to_undo() -> str:
    return error("Nothing to undo")


def undone(restored: Sequence[tuple[str, bool]], snapshot: str | None) -> str:
    """``Undo complete:`` and per undone edit ``Restored: F`` or ``Deleted (created file): F``
    (`restored` holds (file, deleted) pairs)."""
    rows = [f"Deleted (created file): {f}" if gone else f"Restored: {f}" for f, gone in restored]
    text = "Undo complete:\n" + "\n".join(rows)
    return f"{text}\n\n{snapshot}" if snapshot else text


# ── test, submit and the end of the session ──────────────────────────────────────────────


def tests_remaining(left: int) -> str:
    return f"{left} test{'' if left == 1 else 's'} remaining"


def test_budget_exhausted(used: int, allowed: int, tests: int) -> str:
    return error(
        f"Test budget exhausted ({used}/{allowed}). You must now call submit(n=N) to choose "
        f"your final result (N from 1 to {tests})."
    )


WORKSPACE_DAMAGED = "the harness's copy of your files failed its integrity check"


def infrastructure_failure(reason: str, left: int) -> str:
    return (
        f"[Test not counted] Infrastructure failure: {reason}. This was not caused by your "
        f"code. No test was used ({tests_remaining(left)}); you may call test again."
    )


# The wall-clock figures the texts above carry: `(<seconds>s)` and `'elapsed_<job>': <seconds>`.
_TIMING_PATTERNS = (
    (re.compile(r"\(\d+(?:\.\d+)?s\)"), "(<t>s)"),
    (re.compile(r"('elapsed_[^']*': )-?\d+(?:\.\d+)?(?:e-?\d+)?"), r"\1<t>"),
)


def mask_timings(text: str) -> str:
    """``text`` with its wall-clock figures as ``<t>``: two runs of the same calls compare
    equal however fast the machine was (replay, snapshot tests)."""
    for pattern, placeholder in _TIMING_PATTERNS:
        text = pattern.sub(placeholder, text)
    return text


def preflight_refused(elapsed_s: float, left: int, reasons: str) -> str:
    return (
        f"ERROR: Preflight failed: your code was rejected before training ({elapsed_s:.1f}s). "
        f"No test was used ({tests_remaining(left)}).\n\n{reasons}"
    ).rstrip()


def setting_reason(setting: str, reason: str) -> str:
    return f"{setting}: {reason}"


def test_header(number: int, left: int, submit_blocked: bool = False) -> str:
    if submit_blocked:
        then = "run at least one more test before you can submit: iterate at least once"
    else:
        then = "call submit(n=N) to choose which test result to submit as final"
    return f"[Test #{number}] ({tests_remaining(left)}; {then})"


def test_failed(reason: str) -> str:
    return f"[STATUS: FAILED] {reason}"


def results_saved(metrics: Mapping[str, float]) -> str:
    return f"[Leaderboard] Results saved: {dict(metrics)!r}"


def last_test(tests: int) -> str:
    return (
        "[NOTE] This was your last test. You MUST now call submit(n=X) with X the number of "
        f"the test to submit as your final result (1–{tests})."
    )


def tool_result(parts: Iterable[str]) -> str:
    """Sections of one tool result, blank-line separated; empty ones are left out."""
    return "\n\n".join(p for p in parts if p)


def no_tests_yet() -> str:
    return error("No test results yet. Call test() first, then submit(n=N).")


def iterate_first(tests: int, left: int) -> str:
    return error(
        "You must iterate at least once (edit → test → review → edit → test) before "
        f"submitting. You have run {tests} test ({tests_remaining(left)})."
    )


def invalid_test_number(n: int, tests: int) -> str:
    return error(f"Invalid test number n={n}: choose 1–{tests} (or n <= 0 for the latest test).")


def submitting(number: int, auto: bool) -> str:
    verb = "Auto-submitting" if auto else "Submitting"
    return f"[submit] {verb} result from test #{number} as final."


def final_infrastructure_failure(reason: str) -> str:
    return (
        f"[NOTE] The final evaluation hit an infrastructure failure ({reason}); "
        "the harness will retry it."
    )


def steps_exhausted_nothing_submitted() -> str:
    return "[NOTE] Step budget exhausted with no completed test; nothing was submitted."


def agent_stopped_auto_submit(why: str, number: int) -> str:
    return (
        f"[NOTE] The session ended without a submission ({why}); "
        f"your latest test #{number} is submitted as final."
    )


def steps_exhausted_auto_submit(used: int, allowed: int, number: int) -> str:
    return (
        f"[NOTE] Step budget exhausted ({used}/{allowed}); "
        f"your latest test #{number} is submitted as final."
    )


def already_submitted(number: int) -> str:
    return error(f"Already submitted test #{number} as final; the session is over.")


def session_over(used: int, allowed: int) -> str:
    return error(f"Step budget exhausted ({used}/{allowed}); the session is over.")


# ── test feedback (built from trusted outputs only) ──────────────────────────────────────

SECTION_CAP = 6000
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WITHHELD = "[line withheld: it names a hidden metric]"


def cap_text(text: str, limit: int = SECTION_CAP) -> str:
    """Head and tail of ``text`` within ``limit`` characters, with a marker where it was cut."""
    if len(text) <= limit:
        return text
    marker = f"\n… [{len(text) - limit} characters truncated] …\n"
    keep = max(0, limit - len(marker))
    head = keep // 3
    return text[:head] + marker + text[len(text) - (keep - head) :]


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def render_feedback(result: TestResult, jobs: Sequence[JobSpec], hidden_metrics: list[str]) -> str:
    """What the agent reads about a test, built from trusted outputs only.

    Per visible job that ran, ``### <label> (<script>)`` and its `_job_feedback`. Hidden jobs
    and metrics matching ``hidden_metrics`` (fnmatch) never appear, and nothing printed by a
    job that may not show its log (an evaluation, a worker) is ever included.
    """
    sections: list[str] = []
    for job in jobs:
        rows = result.for_setting(job.label)
        if job.hidden or not rows:
            continue
        if not job.show_log and not job.metrics and all(r.status == "ok" for r in rows):
            continue  # a preflight or helper job that passed says nothing
        parts = [f"### {job.label} ({job.script})"]
        parts += _job_feedback(result, job, rows, hidden_metrics)
        section = Redaction.withhold_hidden_lines("\n".join(parts), job.label, hidden_metrics)
        sections.append(cap_text(section))
    return "\n\n".join(sections) if sections else "(no visible evaluation settings ran)"


def _job_feedback(
    result: TestResult, job: JobSpec, rows: list[SeedResult], hidden: list[str]
) -> list[str]:
    """For a job whose log may be shown (``show_log``, a training run) its last
    ``TRAIN_METRICS`` lines, or on failure its reason and a quoted log tail; for a job that
    reports metrics, the values its trusted ``metrics.json`` holds (4 decimals), or its failure
    reason; for any other job, its failure reason only."""
    label = job.label
    parts: list[str] = []
    for row in rows:
        seed_tag = f", seed {row.seed}" if len(rows) > 1 else ""
        if job.show_log:
            train = train_metric_lines(row)
            if train:
                parts.append(f"Training metrics (last steps{seed_tag}):")
                parts.extend(train)
        if row.status == "ok":
            if job.metrics:
                values = ", ".join(
                    f"{k}_{label}={_fmt(v)}"
                    for k, v in row.metrics.items()
                    if not is_hidden_metric(k, label, hidden)
                )
                cached = " [cached]" if row.cached else ""
                parts.append(f"Final metrics ({label}{seed_tag}): {values}{cached}")
            elif row.cached:
                parts.append(f"[cached{seed_tag}]")
            continue
        kind = "FAILED" if row.status == "failed" else "INFRASTRUCTURE ERROR (not charged)"
        parts.append(f"[STATUS: {kind}{seed_tag}] {row.reason or ''}".rstrip())
        if job.show_log and row.log_tail:
            # Quoted, so lines the submission printed cannot pass for harness lines.
            parts.append("Last lines of the log:")
            parts.extend(f"  | {line}" for line in row.log_tail.splitlines())
    if job.metrics and len(rows) > 1 and all(r.status == "ok" for r in rows):
        means = ", ".join(
            f"{k}={_fmt(v)}"
            for k, v in result.metrics([job]).items()
            if not k.startswith("elapsed_")
            and not is_hidden_metric(k[: -len(label) - 1], label, hidden)
        )
        parts.append(f"Final metrics ({label}, mean over {len(rows)} seeds): {means}")
    return parts


# ── redaction ─────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Redaction:
    """What a harness text may not show the agent: host paths, hidden jobs, hidden metrics.

    Reasons come from the executor and may name the (job, seed) that failed, which in a final
    evaluation can be a hidden job, or quote an OS error with a host path.
    """

    host_roots: tuple[str, ...] = ()  # longest first, so a nested root is replaced whole
    hidden_names: tuple[str, ...] = ()  # labels and scripts of hidden jobs
    hidden_metrics: tuple[str, ...] = ()  # names of hidden metrics (any suffix is hidden too)

    @classmethod
    def of(
        cls, roots: Iterable[Path], hidden_names: Iterable[str], hidden_metrics: Iterable[str]
    ) -> Redaction:
        """From host directories (as given and resolved), hidden job names and metric names."""
        paths = list(roots)
        found = {str(p.resolve()) for p in paths} | {str(p) for p in paths}
        ordered = sorted((r for r in found if r not in ("/", "")), key=len, reverse=True)
        return cls(tuple(ordered), tuple(hidden_names), tuple(hidden_metrics))

    def __call__(self, reason: str | None) -> str:
        text = reason or "unknown"
        for root in self.host_roots:
            text = text.replace(root, "<host>")
        for name in self.hidden_names:
            text = text.replace(name, "<hidden>")
        for metric in self.hidden_metrics:
            text = re.sub(rf"\b{re.escape(metric)}\w*", "<hidden>", text)
        return text

    @staticmethod
    def withhold_hidden_lines(text: str, label: str, patterns: list[str]) -> str:
        """Every line that names a hidden metric of setting `label`, replaced by a notice."""
        out = []
        for line in text.splitlines():
            hidden = any(is_hidden_metric(tok, label, patterns) for tok in _IDENT.findall(line))
            out.append(_WITHHELD if hidden else line)
        return "\n".join(out)


# -- the runner's LLM agent loop (the budget itself is stated once, in the budget section) ----
SYSTEM_PROMPT = """\
You are an AI research agent working on a language-model pretraining science task.
You act only through the tools: view, edit, undo, test and submit. Edit only the editable lines,
test your ideas, and finally call submit(n) with the number of the test you choose as your
final result."""

VANILLA_INSTRUCTION = """\
This is a single-shot run: reply ONCE with all the edit tool calls that implement your method.
The harness then runs one test of the edited code and submits it; no further turns follow."""

NO_TOOL_NUDGE = (
    "[Harness] Your reply contained no tool call. Act through the tools "
    "(view, edit, undo, test, submit)."
)


def steps_reminder(left: int) -> str:
    """Said once when the steps are nearly spent and no test has run."""
    return (
        f"[Reminder] Only {left} step(s) remain and you have not run a test yet. "
        "Call test() now, then submit(n)."
    )

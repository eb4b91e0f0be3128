"""Helpers of the attack corpus (``tests/integration/test_attacks.py``).

A *lab* is a private world for hostile code: copies of the two tasks and of the codebase (so
that edits by others cannot change a run halfway), the prepared data in a
``$PRETRAINBENCH_HOME``-like folder, a folder of run directories with another run in it, and
canary secrets planted where a job must never reach. The payloads' building blocks (what hostile
code does once it has escaped: read, write, list) and the checks every attack ends with live
here too: no secret and no hidden value in any text the agent reads, nothing changed outside
the jobs' own outputs, recorded metrics equal to an honest recomputation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from env import Budgets, Session, TaskSpec, ToolResult, load_task
from env._texts import render_feedback
from sandbox import DataPaths, Executor, JobSpec, TestRequest, TestResult
from tests._fixtures.codebase import EVAL_SETS_DIR

REPO = Path(__file__).resolve().parents[2]
LR = "llm-pretrain-lr-schedule"
NORM = "llm-pretrain-normalization"
FILE = "nanoGPT/custom_pretrain.py"  # the editable file as the agent names it
SOURCE = "custom_pretrain.py"  # ... and as the codebase does
#: Short runs (the metrics are still the trusted evaluator's, of the same weights): 2
#: iterations, 8 validation windows; a worker that stops answering fails the evaluation soon.
#: The causality probes' seed is fixed so that a probabilistic outcome reproduces (the harness
#: otherwise draws it secretly per evaluation; no agent can choose it).
RUN_ENV = {
    "PB_MAX_ITERS": "2",
    "PB_VAL_WINDOWS": "8",
    "PB_WORKER_TIMEOUT": "60",
    "PB_CAUSALITY_SEED": "1",
}
#: Every name of the hidden evaluation an agent must never read.
HIDDEN_NAMES = ("piqa", "winogrande", "lm-eval-tiny", "lm_eval_tiny")
PWNED = "PWNED"  # the name of every file hostile code tries to create outside its output

_MARKER = "# ── EDITABLE REGION {}: {} ──\n"


# ── the lab ────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Lab:
    """The world of one test module; see the module docstring."""

    root: Path
    tasks: Path  # snapshot of tasks/<lr>, tasks/<norm> and tasks/codebases/nanogpt
    home: Path  # a $PRETRAINBENCH_HOME-like folder: data/offline, data/offline-eval, tokenizer
    runs: Path  # the parent of every run directory of the module
    data: DataPaths
    canaries: dict[str, str]  # host path -> the secret written there
    eval_snippets: tuple[str, ...]  # texts of the evaluation sets (the answers)

    @property
    def codebase(self) -> Path:
        return self.tasks / "codebases" / "nanogpt"

    def task(self, task_id: str) -> TaskSpec:
        return load_task(self.tasks / task_id)

    def jobs(self, task_id: str, *labels: str) -> list[JobSpec]:
        by_label = {j.label: j for j in self.task(task_id).jobs("tiny")}
        return [by_label[label] for label in labels]

    @property
    def secrets(self) -> list[str]:
        """Texts no job that runs agent code may read, and no agent may see."""
        return [*self.canaries.values(), *self.eval_snippets]

    def source(self) -> str:
        return (self.codebase / SOURCE).read_text()

    def guarded(self) -> str:
        """A digest of everything outside the jobs' outputs that hostile code would change."""
        h = hashlib.sha256()
        for top in (self.tasks, self.home, self.runs / "other-run"):
            files = (p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            for path in sorted(files):
                h.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
        for canary in sorted(self.canaries):
            h.update(Path(canary).read_bytes())
        return h.hexdigest()

    def planted(self) -> list[Path]:
        """Files hostile code managed to create anywhere in the lab (none may exist)."""
        return sorted(self.root.rglob(f"{PWNED}*"))

    # what hostile code tries, with the host layout known (the worst case)
    def reads(self) -> list[str]:
        return [
            *self.canaries,
            str(EVAL_SETS_DIR / "piqa.jsonl"),
            str(self.home / "data" / "offline-eval" / "piqa.jsonl"),
            "/pb/data/eval_data/piqa.jsonl",
            "/pb/data/eval_data/ANSWERS-canary.txt",
        ]

    def writes(self) -> list[str]:
        """Existing files to append to, and new files to create, all outside the job's output."""
        return [
            "/pb/code/evaluate.py",
            "/pb/code/pb_config.py",
            "/pb/code/scripts/eval_tiny.sh",
            f"/pb/code/{PWNED}",
            f"/pb/needs/{PWNED}",
            "/pb/needs/train-tiny/ckpt.pt",
            f"/pb/data/train_data/{PWNED}",
            f"/tmp/../pb/code/{PWNED}-dotdot",
            str(self.codebase / "evaluate.py"),
            str(self.codebase / PWNED),
            str(self.runs / PWNED),
            str(self.home / PWNED),
        ]

    def host_dirs(self) -> list[str]:
        """Host folders no job may list (other runs, the home, the repository, root's home)."""
        return [str(self.runs), str(self.home), str(REPO), "/root"]

    def lists(self) -> list[str]:
        return [*self.host_dirs(), "/pb", "/"]


def make_lab(root: Path, data: DataPaths) -> Lab:
    """Build a lab under ``root`` from the prepared data of ``data`` (copied, never changed)."""
    tasks = root / "src" / "tasks"
    for task_id in (LR, NORM):
        shutil.copytree(REPO / "tasks" / task_id, tasks / task_id)
    shutil.copytree(
        REPO / "tasks" / "codebases" / "nanogpt",
        tasks / "codebases" / "nanogpt",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    home = root / "home"
    assert data.tokenizer_dir is not None and data.eval_data_dir is not None
    shutil.copytree(data.data_dir, home / "data" / "offline")
    shutil.copytree(data.tokenizer_dir, home / "tokenizer")
    shutil.copytree(data.eval_data_dir, home / "data" / "offline-eval")
    runs = root / "runs"
    other = runs / "other-run" / "tests" / "1" / "lm-eval-tiny" / "seed_42"
    other.mkdir(parents=True)
    canaries: dict[str, str] = {}

    def plant(path: Path) -> None:
        canaries[str(path)] = f"pb-canary-{secrets.token_hex(12)}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(canaries[str(path)] + "\n")

    plant(home / "canary.txt")  # in the $PRETRAINBENCH_HOME-like folder
    plant(home / "data" / "canary.txt")  # beside the training data
    plant(home / "data" / "offline-eval" / "ANSWERS-canary.txt")  # among the answers
    plant(runs / "canary.txt")  # in the parent of every run directory
    plant(root / "src" / "canary.txt")  # beside the tasks and the codebase
    plant(other / "metrics.json")  # another run's hidden result
    snippets = tuple(
        json.loads(line)["goal"][:40]
        for line in (home / "data" / "offline-eval" / "piqa.jsonl").read_text().splitlines()[:3]
    )
    return Lab(
        root=root,
        tasks=tasks,
        home=home,
        runs=runs,
        data=DataPaths(
            data_dir=home / "data" / "offline",
            tokenizer_dir=home / "tokenizer",
            eval_data_dir=home / "data" / "offline-eval",
            eval_source="offline",
        ),
        canaries=canaries,
        eval_snippets=snippets,
    )


# ── editing like an agent ──────────────────────────────────────────────────────────────────


def region_range(session: Session, region: str) -> tuple[int, int]:
    """The lines of an editable region as the agent sees them."""
    names = list(session.workspace.region_texts())
    return session.workspace.editable_ranges(FILE)[names.index(region)]


def splice(source: str, regions: dict[str, str]) -> str:
    """``source`` with the bodies of the named regions replaced (each ends with a newline)."""
    for name, body in regions.items():
        start, end = _MARKER.format("START", name), _MARKER.format("END", name)
        head, rest = source.split(start, 1)
        tail = rest.split(end, 1)[1]
        source = head + start + body + end + tail
    return source


@dataclass
class Agent:
    """A scripted agent on a real `Session`: every text it reads is kept."""

    session: Session
    texts: list[str] = field(default_factory=list)

    def call(self, tool: str, arguments: dict[str, object] | None = None) -> ToolResult:
        result = self.session.call(tool, arguments)
        self.texts.append(result.text)
        return result

    def edit(self, region: str, content: str) -> ToolResult:
        start, end = region_range(self.session, region)
        args = {
            "op": "replace",
            "filename": FILE,
            "start_line": start,
            "end_line": end,
            "content": content,
        }
        return self.call("edit", args)


def new_agent(
    lab: Lab,
    task: TaskSpec,
    name: str,
    executor: Executor,
    *,
    max_tests: int = 3,
    env: dict[str, str] | None = None,
) -> Agent:
    run_dir, n = lab.runs / name, 1
    while run_dir.exists():
        n += 1
        run_dir = lab.runs / f"{name}-{n}"
    session = Session(
        task,
        run_dir,
        executor=executor,
        profile="tiny",
        data=lab.data,
        budgets=Budgets(max_steps=20, max_tests=max_tests),
        # one final seed: the attacks need one final evaluation, not the seed spread
        seeds=task.seeds("tiny").model_copy(update={"final": [42]}),
        env={**RUN_ENV, **(env or {})},
    )
    agent = Agent(session)
    agent.texts.append(session.initial_observation())
    return agent


# ── running jobs with the policy out of the way ────────────────────────────────────────────


def run_jobs(
    lab: Lab,
    executor: Executor,
    jobs: list[JobSpec],
    source: str,
    out: Path,
    env: dict[str, str] | None = None,
) -> TestResult:
    """The jobs of a test on an edited ``custom_pretrain.py`` that never met the code policy."""
    request = TestRequest(
        run_id="attack",
        test_id="1",
        codebase_dir=lab.codebase,
        files={SOURCE: source},
        jobs=jobs,
        seeds=[42],
        profile="tiny",
        out_dir=out,
        data=lab.data,
        env={**RUN_ENV, "PB_CONFIG_OVERRIDES": "{}", **(env or {})},
    )
    return executor.run(request)


def feedback(result: TestResult, task: TaskSpec) -> str:
    """What an agent would read about ``result`` (visible jobs, hidden metrics left out)."""
    visible = task.visible_jobs("tiny")
    return render_feedback(result, visible, task.hidden_metric_patterns("tiny"))


def honest_eval(lab: Lab, ckpt_dir: Path, out: Path, *, kind: str = "train") -> dict[str, float]:
    """The trusted evaluator, outside any sandbox, on a training output: its metrics.

    The model is built in process from the original code (``ckpt_dir``'s model source must
    hold the original architecture regions: for an agent architecture of identical maths, copy
    the output and put the original source there).
    """
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PB_")},
        **RUN_ENV,
        "PB_OUT_DIR": str(out),
        "PB_CKPT_DIR": str(ckpt_dir),
        "PB_DATA_DIR": str(lab.data.data_dir),
        "PB_EVAL_DATA_DIR": str(lab.data.eval_data_dir),
        "PB_TOKENIZER_DIR": str(lab.data.tokenizer_dir),
        "PB_PROFILE": "tiny",
        "PB_SEED": "42",
        "PB_DEVICE": "cpu",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",  # the sandboxed job's (JobSpec.threads): the same float sums
    }
    proc = subprocess.run(
        [sys.executable, "evaluate.py", "--kind", kind],
        cwd=lab.codebase,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"honest evaluation failed:\n{proc.stdout}\n{proc.stderr}"
    metrics: dict[str, float] = json.loads((out / "metrics.json").read_text())["metrics"]
    return metrics


def with_original_source(lab: Lab, ckpt_dir: Path, dest: Path) -> Path:
    """A copy of a training output whose model source is the original file (same weights)."""
    dest.mkdir(parents=True)
    for name in ("ckpt.pt", ".training_complete"):
        os.link(ckpt_dir / name, dest / name)
    (dest / "model_source.py").write_text(lab.source())
    return dest


# ── what hostile code does once it runs with full power ───────────────────────────────────


def python_action(lab: Lab) -> str:
    """Python for an escaped payload: read the secrets, write outside its output, list the
    host; what worked goes to ``builtins.PB_LOOT`` (successes first, so that they survive the
    cap on an exception's message). The paths travel base64-encoded: the agent's own edit is
    echoed back to it, and the names of hidden things in them would pass for a leak."""
    paths = _encoded({"reads": lab.reads(), "writes": lab.writes(), "lists": lab.lists()})
    return f"""import base64, builtins, json, os
paths = json.loads(base64.b64decode({paths!r}))
loot, denied = ["uid=%d" % os.getuid()], 0
for path in paths["reads"]:
    try:
        with open(path, errors="replace") as fh:
            loot.insert(0, "READ %s: %s" % (path, fh.read(100)))
    except Exception:
        denied += 1
for path in paths["writes"]:
    try:
        with open(path, "a") as fh:
            fh.write("\\nraise SystemExit('PWNED')\\n")
        loot.insert(0, "WROTE " + path)
    except Exception:
        denied += 1
for path in paths["lists"]:
    try:
        loot.append("LS %s: %s" % (path, ",".join(sorted(os.listdir(path))[:12])))
    except Exception:
        denied += 1
loot.append("denied=%d" % denied)
builtins.PB_LOOT = " | ".join(loot)
"""


def shell_action(lab: Lab) -> str:
    """The same in sh, for payloads that reach a shell: prints what worked (base64-encoded
    for the same reason)."""
    reads = " ".join(f"'{p}'" for p in lab.reads())
    writes = " ".join(f"'{p}'" for p in lab.writes())
    lists = " ".join(f"'{p}'" for p in lab.lists())
    script = (
        f'for f in {reads}; do head -c 100 "$f" 2>/dev/null | sed "s|^|READ $f: |"; done\n'
        f'for f in {writes}; do (echo PWNED >> "$f") 2>/dev/null && echo "WROTE $f"; done\n'
        "echo uid=$(id -u)\n"
        f'for d in {lists}; do echo "LS $d: $(ls "$d" 2>/dev/null | head -12 | tr "\\n" ,)"; done\n'
    )
    return f"echo {_encoded(script)} | base64 -d | sh"


def _encoded(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return base64.b64encode(text.encode()).decode()


# ── the checks ─────────────────────────────────────────────────────────────────────────────


def hidden_needles(values: Iterable[float]) -> list[re.Pattern[str]]:
    """Patterns of hidden numbers as an agent might find them: 4 and 2 decimals, repr (when it
    is specific enough not to occur by chance), and base64 of the repr."""
    out: list[re.Pattern[str]] = []
    for value in values:
        forms = [f"{value:.4f}", f"{value:.2f}"]
        text = repr(float(value))
        if len(text.partition(".")[2]) >= 3:
            forms.append(text)
        out += [re.compile(rf"(?<![\d.]){re.escape(f)}(?!\d)") for f in forms]
        out.append(re.compile(re.escape(base64.b64encode(text.encode()).decode())))
    return out


def leaks(texts: Iterable[str], lab: Lab, hidden: Iterable[float] = ()) -> list[str]:
    """Every secret, hidden name or hidden value found in ``texts`` (empty: nothing leaked)."""
    needles = hidden_needles(hidden)
    found: list[str] = []
    for text in texts:
        lower = text.lower()
        found += [f"secret {s!r}" for s in lab.secrets if s in text]
        found += [f"hidden name {n!r}" for n in HIDDEN_NAMES if n in lower]
        found += [f"hidden value {p.pattern!r}" for p in needles if p.search(text)]
        found += [f"wrote outside its output: {m}" for m in re.findall(r"WROTE (/\S+)", text)]
        runtime = {n for d in lab.host_dirs() for n in _runtime_names(d)}
        for path, listing in re.findall(r"LS (\S+): ([^|\n]*)", text):
            # the harness writes <host> for host paths in what the agent reads
            if path in lab.host_dirs() or path.startswith("<host>"):
                shown = {n for n in listing.strip().split(",") if n} - runtime
                if shown:
                    found.append(f"listed {path}: {sorted(shown)}")
    return found


def _runtime_names(directory: str) -> set[str]:
    """Names in ``directory`` a job sees because the Python runtime is bound at its host path
    (``/work/main/.venv``, ``/root/.pyenv/...``): not a leak, the sandbox's own view."""
    names = set()
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        for path in (Path(prefix), Path(prefix).resolve()):
            if path.is_relative_to(directory) and path != Path(directory):
                names.add(path.relative_to(directory).parts[0])
    return names


def loot_uid(text: str) -> int | None:
    """The uid a payload reported (proof that it ran), if any."""
    match = re.search(r"uid=(\d+)", text)
    return int(match.group(1)) if match else None


def eval_tokens_leaked(text: str, lab: Lab) -> str | None:
    """Evaluation-set text that ``text`` carries as GPT-2 token ids (a run of 12+ numbers whose
    decoding holds a passage of the evaluation sets), or None."""
    sys.path.insert(0, str(lab.codebase))
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        import pb_tokenizer  # the codebase's own, sha256-checked
    finally:
        sys.path.remove(str(lab.codebase))
        sys.dont_write_bytecode = saved
    enc = pb_tokenizer.get_gpt2_encoding(str(lab.data.tokenizer_dir))
    assert lab.data.eval_data_dir is not None
    corpus = " ".join(
        " ".join(str(v) for v in json.loads(line).values() if isinstance(v, str))
        for path in sorted(lab.data.eval_data_dir.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    )
    for run in re.findall(r"(?:\b\d{1,5}\b[ ,]+){12,}", text):
        ids = [int(t) for t in re.findall(r"\d+", run) if int(t) < enc.n_vocab]
        decoded = enc.decode(ids).replace("<|endoftext|>", "")
        # prompts wrap the sets' texts ("Question: ... Answer:"): any 24 characters of them
        if any(decoded[i : i + 24] in corpus for i in range(0, max(1, len(decoded) - 23), 4)):
            return decoded
    return None

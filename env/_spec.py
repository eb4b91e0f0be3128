"""Task specifications: ``tasks/<id>/task.yaml`` + ``description.md`` → `TaskSpec`.

Pydantic checks the shape of the file (``extra="forbid"``, so a misspelt key is an error, not
a silently ignored one); `semantic_problems` checks what refers to what inside it (labels,
metrics, baselines); `validate_task_dir` adds the checks against files on disk (codebase,
regions, invariants, scripts, baselines). Every problem names the file and the field.
"""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import ConfigDict, Field, PrivateAttr, ValidationError

from env._errors import TaskSpecError
from env._invariants import ClassInvariant, Invariant, SignatureInvariant, check_invariants
from env._models import NAME as _NAME
from env._models import RelPath
from env._models import SpecModel as _Model
from env._paths import baselines_dir, tasks_dir
from env._regions import RegionSyntaxError, find_regions
from env._texts import DESCRIPTION_SLOTS
from sandbox import JobSpec, job_levels

__all__ = [
    "DEFAULT_ALLOWED_IMPORTS",
    "Budgets",
    "ClassInvariant",
    "CodePolicy",
    "DataRegion",
    "DefaultProfiles",
    "EditableFile",
    "Invariant",
    "MetricSpec",
    "PlotSpec",
    "ProfileSpec",
    "SeedPlan",
    "SignatureInvariant",
    "TaskSpec",
    "list_tasks",
    "load_task",
    "semantic_problems",
    "validate_task_dir",
]

DEFAULT_ALLOWED_IMPORTS = ["math", "torch", "torch.nn", "torch.nn.functional"]


class EditableFile(_Model):
    """A codebase file the agent may edit, and which of its named regions are open."""

    path: RelPath
    regions: list[Annotated[str, Field(pattern=_NAME)]] = Field(min_length=1)


class CodePolicy(_Model):
    """What code written into a region may use (checked on the AST of every edit)."""

    allowed_imports: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOWED_IMPORTS))
    allow_submodules: bool = True
    forbidden_names: list[str] = Field(default_factory=list)
    forbidden_calls: list[str] = Field(default_factory=list)


class DataRegion(_Model):
    """A region that holds data, not code: ``<variable> = <literal>``, parsed with
    ``ast.literal_eval`` by the harness and handed to every job as JSON in ``env``; never
    executed anywhere (e.g. ``CONFIG_OVERRIDES``, whose keys and ranges trusted code checks)."""

    variable: str = Field(pattern=_NAME)
    env: str = Field(pattern=r"^PB_[A-Z0-9_]+$")


class SeedPlan(_Model):
    """Seeds of intermediate tests and of the final evaluation."""

    test: list[int] = Field(default_factory=lambda: [42], min_length=1)
    final: list[int] = Field(default_factory=lambda: [42], min_length=1)


class ProfileSpec(_Model):
    """One scale profile: its jobs (linked by ``needs``), seeds override, recipe facts, and the
    data it trains on (``offline``: the corpus built locally; ``fineweb``: FineWeb shards)."""

    jobs: list[JobSpec] = Field(min_length=1)
    seeds: SeedPlan | None = None
    recipe: dict[str, str | int | float | bool] = Field(default_factory=dict)
    data: Literal["offline", "fineweb"] = "offline"


class DefaultProfiles(_Model):
    """The profile a run takes when none is asked for: on a CPU-only host, and on a host with
    enough GPUs for the ``gpu`` profile's jobs."""

    cpu: str
    gpu: str


class PlotSpec(_Model):
    """A plot of a function defined in an open region, one curve per baseline.

    ``function`` is called with ``x`` swept over ``0..recipe[x_range]`` and each other parameter
    from the profile's recipe (``args``: parameter → recipe key); e.g. the learning rate that
    ``get_lr`` returns against the iteration.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str = Field(min_length=1)
    function: str = Field(pattern=_NAME)
    x: str = Field(pattern=_NAME)
    x_range: str = Field(min_length=1)
    x_label: str | None = None
    args: dict[Annotated[str, Field(pattern=_NAME)], str] = Field(default_factory=dict)
    y_label: str = Field(min_length=1)

    @property
    def recipe_keys(self) -> list[str]:
        """The recipe keys the plot reads."""
        return [self.x_range, *self.args.values()]


class MetricSpec(_Model):
    """A metric of the task; in each profile exactly one job reports it (``JobSpec.metrics``)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    direction: Literal["lower", "higher"]
    hidden: bool = False
    primary: bool = False
    bound: float | None = None
    weight: float = Field(default=1.0, gt=0)


class Budgets(_Model):
    """The default budgets of a task (a run may override them)."""

    max_steps: int = Field(default=20, ge=1)
    max_tests: int = Field(default=3, ge=1)


class TaskSpec(_Model):
    """A validated task: what the agent may edit, how results are measured, its budgets."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    title: str = Field(min_length=1)
    description: RelPath = "description.md"
    codebase: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    package: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    editable_files: list[EditableFile] = Field(min_length=1)
    read_only_files: list[RelPath] = Field(default_factory=list)
    allow_create: bool = False
    invariants: list[Invariant] = Field(default_factory=list)
    code_policy: CodePolicy = Field(default_factory=CodePolicy)
    data_regions: dict[Annotated[str, Field(pattern=_NAME)], DataRegion] = Field(
        default_factory=dict
    )
    profiles: dict[Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")], ProfileSpec] = Field(
        min_length=1
    )
    metrics: list[MetricSpec] = Field(min_length=1)
    budgets: Budgets = Field(default_factory=Budgets)
    default_seeds: SeedPlan = Field(default_factory=SeedPlan, alias="seeds")
    baselines: list[Annotated[str, Field(pattern=_NAME)]] = Field(default_factory=list)
    reference_baseline: str | None = None
    default_profile: DefaultProfiles | None = None
    plots: list[PlotSpec] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    _task_dir: Path | None = PrivateAttr(default=None)
    _description_template: str = PrivateAttr(default="")

    # -- where things are ---------------------------------------------------------------------

    @property
    def task_dir(self) -> Path:
        """The folder the spec was loaded from."""
        if self._task_dir is None:
            raise TaskSpecError(f"task {self.id!r} was not loaded from a folder")
        return self._task_dir

    @property
    def codebase_dir(self) -> Path:
        """The codebase folder: ``<task folder>/../codebases/<codebase>``, else the task root's."""
        if self._task_dir is not None:
            sibling = self._task_dir.parent / "codebases" / self.codebase
            if sibling.is_dir():
                return sibling
        return tasks_dir() / "codebases" / self.codebase

    @property
    def description_template(self) -> str:
        """The raw ``description.md`` text (a ``str.format_map`` template)."""
        return self._description_template

    def agent_path(self, path: str) -> str:
        """The name the agent sees for a codebase-relative path: ``nanoGPT/custom_pretrain.py``."""
        return f"{self.package}/{path}"

    def editable_file(self, path: str) -> EditableFile | None:
        """The editable-file entry for a codebase-relative path, if it is one."""
        return next((f for f in self.editable_files if f.path == path), None)

    # -- profiles -------------------------------------------------------------------------------

    def profile(self, name: str) -> ProfileSpec:
        """The profile called ``name``; a clear error names the ones that exist."""
        try:
            return self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.profiles))
            raise TaskSpecError(
                f"task {self.id!r} has no profile {name!r} (profiles: {known})"
            ) from None

    def jobs(self, profile: str) -> list[JobSpec]:
        """All jobs of a profile, hidden ones included, in file order."""
        return list(self.profile(profile).jobs)

    def visible_jobs(self, profile: str) -> list[JobSpec]:
        """The jobs the agent may see and that intermediate tests run."""
        return [j for j in self.jobs(profile) if not j.hidden]

    def seeds(self, profile: str) -> SeedPlan:
        """Seeds of a profile: its own ``seeds`` if given, else the task's."""
        return self.profile(profile).seeds or self.default_seeds

    def recipe(self, profile: str) -> dict[str, str | int | float | bool]:
        """The recipe facts of a profile (for the description)."""
        return dict(self.profile(profile).recipe)

    @property
    def default_profiles(self) -> DefaultProfiles:
        """``default_profile``; where a task gives none, its first profile on a CPU and its
        last on GPUs (profiles are written smallest first)."""
        if self.default_profile is not None:
            return self.default_profile
        names = list(self.profiles)
        return DefaultProfiles(cpu=names[0], gpu=names[-1])

    def open_region_defining(self, function: str) -> tuple[str, str] | None:
        """``(region name, body text)`` of the codebase's open region that defines
        ``function`` at its top level, or None."""
        for entry in self.editable_files:
            lines = (self.codebase_dir / entry.path).read_text(encoding="utf-8").splitlines()
            for span in find_regions(lines):
                if span.name not in entry.regions:
                    continue
                first, last = span.body
                body = "\n".join(lines[first - 1 : last])
                if defines_function(body, function):
                    return span.name, body
        return None

    def plot(self, name: str | None = None) -> PlotSpec:
        """The plot called ``name`` (the first one when None); a clear error names the others."""
        for plot in self.plots:
            if name is None or plot.name == name:
                return plot
        if name is None:
            raise TaskSpecError(f"task {self.id!r} has no plot (task.yaml declares no plots:)")
        known = ", ".join(p.name for p in self.plots) or "none"
        raise TaskSpecError(f"task {self.id!r} has no plot {name!r} (plots: {known})")

    # -- metrics --------------------------------------------------------------------------------

    @property
    def primary_metric(self) -> MetricSpec:
        """The one metric marked ``primary``."""
        return next(m for m in self.metrics if m.primary)

    def metric(self, name: str) -> MetricSpec:
        """The metric called ``name``."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise TaskSpecError(f"task {self.id!r} has no metric {name!r}")

    def metric_job(self, metric: str | MetricSpec, profile: str) -> JobSpec:
        """The job that reports a metric in a profile."""
        spec = self.metric(metric) if isinstance(metric, str) else metric
        for job in self.jobs(profile):
            if spec.name in job.metrics:
                return job
        raise TaskSpecError(
            f"task {self.id!r}: profile {profile!r} has no job that reports {spec.name!r}"
        )

    def metric_key(self, metric: str | MetricSpec, profile: str) -> str:
        """The reported key of a metric: ``val_loss`` → ``val_loss_gpt-tiny``."""
        spec = self.metric(metric) if isinstance(metric, str) else metric
        return f"{spec.name}_{self.metric_job(spec, profile).label}"

    def hidden_metric_patterns(self, profile: str) -> list[str]:
        """fnmatch patterns of every reported key the agent must not see.

        Hidden metrics (``piqa_*``) and everything a hidden job reports (``*_lm-eval-tiny``,
        including its ``elapsed_`` key).
        """
        patterns = [f"{m.name}_*" for m in self.metrics if m.hidden]
        patterns += [f"*_{j.label}" for j in self.jobs(profile) if j.hidden]
        return patterns


# ---------------------------------------------------------------------------------------------
# Loading


def _resolve_task_dir(task: str | Path) -> Path:
    candidate = Path(task)
    if candidate.is_dir() and (candidate / "task.yaml").is_file():
        return candidate.resolve()
    if isinstance(task, str) and "/" not in task and "\\" not in task:
        folder = tasks_dir() / task
        if (folder / "task.yaml").is_file():
            return folder.resolve()
        known = ", ".join(list_tasks()) or "none"
        raise TaskSpecError(f"unknown task {task!r} in {tasks_dir()} (tasks: {known})")
    raise TaskSpecError(f"{task}: not a task folder (no task.yaml)")


def _read_yaml(path: Path) -> tuple[object, str | None]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError) as e:
        return None, f"{path}: cannot read: {e}"
    except yaml.YAMLError as e:
        return None, f"{path}: not valid YAML: {e}"


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _pydantic_problems(label: str, error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        # Tagged unions add the tag to the location ("invariants[0].signature.params"); the
        # tag is not a key of the file, so drop it.
        loc = tuple(p for p in item["loc"] if p not in ("signature", "class"))
        value = item.get("input")
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        shown = ""
        if not isinstance(value, dict | list) and repr(value) not in message:
            shown = f" (got {value!r})"
        problems.append(f"{label}: {_loc(loc)}: {message}{shown}")
    return problems


def _parse_spec(task_dir: Path) -> tuple[TaskSpec | None, list[str]]:
    yaml_path = task_dir / "task.yaml"
    label = _display(yaml_path)
    data, problem = _read_yaml(yaml_path)
    if problem:
        return None, [problem]
    if not isinstance(data, dict):
        return None, [f"{label}: the file must be a mapping of fields, got {type(data).__name__}"]
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as e:
        return None, _pydantic_problems(label, e)
    spec._task_dir = task_dir.resolve()
    return spec, []


def _display(path: Path) -> str:
    """``tasks/x/task.yaml`` style: relative to the task root's parent when possible."""
    try:
        return str(path.resolve().relative_to(tasks_dir().parent))
    except ValueError:
        return str(path)


def load_task(task: str | Path) -> TaskSpec:
    """Load and check a task by id (under the task root) or by folder path.

    Raises `TaskSpecError` listing every problem `validate_task_dir` finds.
    """
    task_dir = _resolve_task_dir(task)
    problems = validate_task_dir(task_dir)
    if problems:
        raise TaskSpecError(
            f"task {task_dir.name!r} is invalid:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    spec, _ = _parse_spec(task_dir)
    assert spec is not None  # validate_task_dir reported any parse problem
    spec._description_template = (task_dir / spec.description).read_text(encoding="utf-8")
    return spec


def list_tasks() -> list[str]:
    """Ids of the task folders under the task root, sorted."""
    root = tasks_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "task.yaml").is_file())


# ---------------------------------------------------------------------------------------------
# Checks


def semantic_problems(spec: TaskSpec, label: str = "task.yaml") -> list[str]:
    """Cross-references inside a parsed spec that pydantic alone cannot check."""
    problems: list[str] = []
    primaries = [m.name for m in spec.metrics if m.primary]
    if len(primaries) != 1:
        problems.append(
            f"{label}: metrics: exactly one metric must be primary, found {len(primaries)}"
            + (f" ({', '.join(primaries)})" if primaries else "")
        )
    names = [m.name for m in spec.metrics]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(f"{label}: metrics[{i}].name: duplicate metric {name!r}")
    paths = [f.path for f in spec.editable_files]
    for i, f in enumerate(spec.editable_files):
        if f.path in paths[:i]:
            problems.append(f"{label}: editable_files[{i}].path: duplicate file {f.path!r}")
        for j, region in enumerate(f.regions):
            if region in f.regions[:j]:
                problems.append(
                    f"{label}: editable_files[{i}].regions[{j}]: duplicate region {region!r}"
                )
    all_regions = [r for f in spec.editable_files for r in f.regions]
    for region in sorted({r for r in all_regions if all_regions.count(r) > 1}):
        if len({f.path for f in spec.editable_files if region in f.regions}) > 1:
            problems.append(f"{label}: editable_files: region {region!r} is opened in two files")
    for i, ro in enumerate(spec.read_only_files):
        if ro in paths:
            problems.append(f"{label}: read_only_files[{i}]: {ro!r} is also an editable file")
    for i, inv in enumerate(spec.invariants):
        if inv.file not in paths and inv.file not in spec.read_only_files:
            problems.append(
                f"{label}: invariants[{i}].file: {inv.file!r} is not one of the task's files"
            )
    metric_names = {m.name for m in spec.metrics}
    for pname, profile in spec.profiles.items():
        where = f"{label}: profiles.{pname}.jobs"
        try:
            job_levels(profile.jobs)
        except ValueError as e:
            problems.append(f"{where}: {e}")
        for i, job in enumerate(profile.jobs):
            for name in job.metrics:
                if name not in metric_names:
                    problems.append(
                        f"{where}[{i}].metrics: {name!r} is not one of the task's metrics"
                    )
        for i, metric in enumerate(spec.metrics):
            reporters = [j.label for j in profile.jobs if metric.name in j.metrics]
            if len(reporters) != 1:
                problems.append(
                    f"{label}: metrics[{i}]: in profile {pname!r} exactly one job must report "
                    f"{metric.name!r}, found {len(reporters)}"
                    + (f" ({', '.join(reporters)})" if reporters else "")
                )
        if all(j.hidden for j in profile.jobs if j.metrics):
            problems.append(f"{where}: every job that reports metrics is hidden")
    open_regions = {r for f in spec.editable_files for r in f.regions}
    for name in spec.data_regions:
        if name not in open_regions:
            problems.append(f"{label}: data_regions.{name}: not an open region of the task")
    if spec.reference_baseline is not None and spec.reference_baseline not in spec.baselines:
        problems.append(
            f"{label}: reference_baseline: {spec.reference_baseline!r} is not in baselines"
        )
    for i, name in enumerate(spec.baselines):
        if name in spec.baselines[:i]:
            problems.append(f"{label}: baselines[{i}]: duplicate baseline {name!r}")
    problems += _default_profile_problems(spec, label)
    problems += _plot_problems(spec, label)
    return problems


def _default_profile_problems(spec: TaskSpec, label: str) -> list[str]:
    if spec.default_profile is None:
        return []
    return [
        f"{label}: default_profile.{host}: {name!r} is not a profile of the task "
        f"(profiles: {', '.join(spec.profiles)})"
        for host, name in spec.default_profile.model_dump().items()
        if name not in spec.profiles
    ]


def defines_function(source: str, function: str) -> bool:
    """Whether ``source`` defines ``function`` at its top level (False if it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(n, ast.FunctionDef) and n.name == function for n in tree.body)


def _plot_problems(spec: TaskSpec, label: str) -> list[str]:
    problems: list[str] = []
    names = [p.name for p in spec.plots]
    for i, plot in enumerate(spec.plots):
        if plot.name in names[:i]:
            problems.append(f"{label}: plots[{i}].name: duplicate plot {plot.name!r}")
        if plot.x in plot.args:
            problems.append(f"{label}: plots[{i}].args: {plot.x!r} is the swept parameter x")
        for pname, profile in spec.profiles.items():
            missing = [key for key in plot.recipe_keys if key not in profile.recipe]
            if missing:
                problems.append(
                    f"{label}: plots[{i}]: profile {pname!r} has no recipe "
                    f"{', '.join(repr(k) for k in missing)}"
                )
            elif not isinstance(profile.recipe[plot.x_range], int):
                problems.append(
                    f"{label}: plots[{i}].x_range: recipe {plot.x_range!r} of profile "
                    f"{pname!r} is not an integer"
                )
    return problems


def _template_problems(spec: TaskSpec, text: str, label: str) -> list[str]:
    problems: list[str] = []
    if re.search(r"^#+\s*your budget\b", text, re.IGNORECASE | re.MULTILINE):
        # The budget section is generated from the spec; a second one would drift from it.
        problems.append(f"{label}: has a budget section; it is generated, leave it out")
    open_regions = {r for f in spec.editable_files for r in f.regions}
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        return [f"{label}: not a valid template ({e}); write literal braces as {{{{ and }}}}"]
    for field in fields:
        root = field.split("[", 1)[0].split(".", 1)[0]
        if root not in DESCRIPTION_SLOTS:
            problems.append(
                f"{label}: unknown slot {{{field}}} (slots: {', '.join(sorted(DESCRIPTION_SLOTS))})"
            )
        elif root == "lines":
            key = field[len("lines[") : -1] if field.startswith("lines[") else ""
            if key not in open_regions:
                problems.append(f"{label}: slot {{{field}}} names no open region")
    return problems


def _file_problems(spec: TaskSpec, label: str) -> list[str]:
    problems: list[str] = []
    codebase = spec.codebase_dir
    if not codebase.is_dir():
        return [f"{label}: codebase: no codebase folder {_display(codebase)}"]
    trees: dict[str, ast.Module] = {}
    for i, f in enumerate(spec.editable_files):
        path = codebase / f.path
        if not path.is_file():
            problems.append(f"{label}: editable_files[{i}].path: no file {_display(path)}")
            continue
        text = path.read_text(encoding="utf-8")
        try:
            spans = {s.name: s for s in find_regions(text.split("\n"))}
        except RegionSyntaxError as e:
            problems.append(f"{_display(path)}: {e}")
            continue
        for j, region in enumerate(f.regions):
            if region not in spans:
                problems.append(
                    f"{label}: editable_files[{i}].regions[{j}]: region {region!r} has no "
                    f"markers in {_display(path)} (regions there: "
                    f"{', '.join(spans) or 'none'})"
                )
        if path.suffix == ".py":
            try:
                trees[f.path] = ast.parse(text)
            except SyntaxError as e:
                problems.append(f"{_display(path)}: line {e.lineno}: syntax error: {e.msg}")
    for i, ro in enumerate(spec.read_only_files):
        if not (codebase / ro).is_file():
            problems.append(f"{label}: read_only_files[{i}]: no file {_display(codebase / ro)}")
    for i, inv in enumerate(spec.invariants):
        tree = trees.get(inv.file)
        if tree is not None:
            # The checker that guards every edit, applied to the original: one implementation.
            for v in check_invariants(tree, [inv], tree):
                where = f"invariants[{i}].{v.field}" if v.field else f"invariants[{i}]"
                problems.append(f"{label}: {where}: {inv.file}: {v.message}")
    for pname, profile in spec.profiles.items():
        for i, job in enumerate(profile.jobs):
            scripts = {"script": job.script}
            if job.workers is not None:
                scripts["workers.script"] = job.workers.script
            for field, script in scripts.items():
                if not (codebase / script).is_file():
                    problems.append(
                        f"{label}: profiles.{pname}.jobs[{i}].{field}: no file "
                        f"{script!r} in codebase {spec.codebase!r}"
                    )
    if spec.baselines:
        folder = baselines_dir() / spec.id
        if spec._task_dir is not None and (spec._task_dir.parent.parent / "baselines").is_dir():
            # A task root outside the repo keeps its baselines beside it (tests, installs).
            alt = spec._task_dir.parent.parent / "baselines" / spec.id
            folder = alt if alt.is_dir() else folder
        for i, name in enumerate(spec.baselines):
            if not (folder / f"{name}.py").is_file():
                problems.append(
                    f"{label}: baselines[{i}]: no baseline file {_display(folder / name)}.py"
                )
        if folder.is_dir():
            for extra in sorted(folder.glob("*.py")):
                if extra.stem not in spec.baselines and not extra.stem.startswith("_"):
                    problems.append(
                        f"{label}: baselines: {_display(extra)} is not listed in baselines"
                    )
    return problems


def validate_task_dir(path: str | Path) -> list[str]:
    """Every problem of a task folder, each naming the file and the field; [] means valid."""
    task_dir = Path(path)
    yaml_path = task_dir / "task.yaml"
    if not yaml_path.is_file():
        return [f"{_display(task_dir)}: no task.yaml"]
    label = _display(yaml_path)
    spec, problems = _parse_spec(task_dir)
    if spec is None:
        return problems
    problems += semantic_problems(spec, label)
    if spec.id != task_dir.resolve().name:
        problems.append(f"{label}: id: {spec.id!r} differs from the folder name {task_dir.name!r}")
    description = task_dir / spec.description
    if not description.is_file():
        problems.append(f"{label}: description: no file {_display(description)}")
    else:
        problems += _template_problems(
            spec, description.read_text(encoding="utf-8"), _display(description)
        )
    problems += _file_problems(spec, label)
    if not problems:  # the regions are readable: the plotted functions must be in them
        problems += [
            f"{label}: plots[{i}].function: no open region defines {plot.function!r}"
            for i, plot in enumerate(spec.plots)
            if spec.open_region_defining(plot.function) is None
        ]
    return problems

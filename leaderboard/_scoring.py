"""Scoring: pure functions from per-seed metric values to normalised scores and rankings.

Normalisation of one metric (MLS-Bench style, direction-aware)
-------------------------------------------------------------
Values are first turned into "goodness" ``g = x`` (higher is better) or ``g = -x`` (lower is
better), so the same formula serves losses and accuracies. With the anchors taken from the
baselines' seed means — ``w`` the worst baseline, ``b`` the best baseline, ``B`` the bound
(e.g. loss 0, perplexity 1, accuracy 100), all as goodness — a value scores::

    u     = clip((g - w) / (B - w), 0, 1)          # linear position between worst and bound
    r     = (b - w) / (B - w)                      # where the best baseline sits, in (0, 1)
    gamma = ln(0.5) / ln(r)                        # so that r ** gamma == 0.5
    score = u ** gamma

so the worst baseline scores 0, the best baseline 0.5, the bound 1, anything worse than the
worst baseline 0 and anything past the bound 1. Degenerate anchors:

* one distinct baseline value (``w == b``): 0 below it, and ``0.5 + 0.5 * (g - b) / (B - b)``
  from it up to the bound (linear, 0.5 at the baseline, 1 at the bound);
* no bound: ``gamma = 1`` on the baseline spread, ``score = clip(0.5 * (g - w) / (b - w), 0, 1)``
  (and, with ``w == b`` too, 0.5 at or above the baseline, else 0);
* no baseline value at all: the metric cannot be normalised and the task has no scores.

Aggregation: a setting scores the weighted mean of its metrics' scores; the task score is the
geometric mean over settings with ``eps = 0.01``::

    task = exp(mean_i ln(s_i + eps)) - eps

which stays finite when a setting scores 0 and equals the plain mean when all settings agree.
A run that failed, crashed on a seed, lacks a scored metric, or has no final result scores 0
and is kept in the table with its status.

Ties (``rank_with_ties``): rows are ranked by score, but a difference the baselines' seed
noise cannot tell apart is not a ranking. Walking the ranked rows best first, each row is
compared on the task's primary metric with the *first* row of the current tie group: it joins
the group when the two are indistinguishable — Welch's t-test not significant (p >= 0.05) when
both have two or more seeds, else their means differ by at most the noise band's half-width
(2 × the baselines' pooled seed std) — and otherwise starts a new group. Comparing with the
group's first row, not the previous row, keeps a slow drift of small steps from chaining the
whole table into one tie. Tied rows share the rank of the group's first row (``=2``); the next
group's rank counts the rows above it (1, =2, =2, 4). Where neither test can be judged (one
seed and no baseline with two), rows are not tied.

Rankings never mix profiles, budgets, codebase versions or dataset sources: see
``ComparableGroup``. The task's reference row (its unmodified default) is scored and shown but
is not an anchor unless ``reference_as_anchor`` is set.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ._records import Direction, MetricInfo, Origin, RunRecord, RunType
from ._stats import SeedStats, WelchResult, seed_stats, welch_from_stats

GMEAN_EPS = 0.01
SIGNIFICANCE_LEVEL = 0.05
#: run types without an agent's budgets: every comparable group of their anchor key admits them
#: (a baseline also anchors scores; a researcher's hand-written method does not)
UNBUDGETED: tuple[RunType, ...] = ("baseline", "method")
ResultStatus = Literal["ok", "failed", "infra_error", "incomplete"]


@dataclass(frozen=True, order=True)
class ComparableGroup:
    """What two results must share to be ranked together.

    Baselines are anchors for every budget: their budgets are not part of their identity, so a
    baseline joins each budget group of its (task, profile, codebase, dataset) key.
    """

    task_id: str
    profile: str
    codebase_version: str
    dataset_source: str
    max_steps: int | None = None
    max_tests: int | None = None

    @property
    def anchor_key(self) -> tuple[str, str, str, str]:
        """The part of the key that baselines must share."""
        return (self.task_id, self.profile, self.codebase_version, self.dataset_source)

    def label(self) -> str:
        """A short human-readable description."""
        budget = (
            f"{self.max_steps} steps / {self.max_tests} tests"
            if self.max_steps is not None
            else "no agent budgets"
        )
        return f"{self.profile} · {budget} · codebase {self.codebase_version} · data {self.dataset_source}"

    def slug(self) -> str:
        """A stable text form for URLs: ``profile|steps|tests|codebase|dataset``."""
        steps = "" if self.max_steps is None else str(self.max_steps)
        tests = "" if self.max_tests is None else str(self.max_tests)
        return "|".join([self.profile, steps, tests, self.codebase_version, self.dataset_source])

    @classmethod
    def from_slug(cls, task_id: str, slug: str) -> ComparableGroup:
        """Parse ``slug()``; raises ``ValueError`` on malformed text."""
        parts = slug.split("|")
        if len(parts) != 5:
            raise ValueError(f"group {slug!r} is not profile|steps|tests|codebase|dataset")
        profile, steps, tests, codebase, dataset = parts
        return cls(
            task_id=task_id,
            profile=profile,
            codebase_version=codebase,
            dataset_source=dataset,
            max_steps=int(steps) if steps else None,
            max_tests=int(tests) if tests else None,
        )

    def admits(self, result: RunResult) -> bool:
        """Whether ``result`` belongs in this group's ranking."""
        if result.anchor_key != self.anchor_key:
            return False
        if result.type in UNBUDGETED:
            return True
        return (result.max_steps, result.max_tests) == (self.max_steps, self.max_tests)


@dataclass(frozen=True)
class RunResult:
    """The scoring view of one run: identity plus per-metric seed values of its result rows."""

    run_id: str
    task_id: str
    type: RunType
    method: str
    profile: str
    codebase_version: str
    dataset_source: str
    max_steps: int
    max_tests: int
    status: ResultStatus
    values: Mapping[str, Sequence[float]] = field(default_factory=dict)
    #: the evaluator's standard error per seed, for metrics whose every seed has one
    stderr: Mapping[str, Sequence[float]] = field(default_factory=dict)
    reference: bool = False
    agent: str = ""
    model: str | None = None
    auto_submitted: bool = False  # the harness submitted the agent's latest completed test
    origin: Origin = "own"  # "imported": computed elsewhere (`runner import`), shown as such

    @property
    def anchor_key(self) -> tuple[str, str, str, str]:
        return (self.task_id, self.profile, self.codebase_version, self.dataset_source)

    def group(self) -> ComparableGroup:
        """The comparable group of a budgeted run (a baseline's or method's has no budgets)."""
        budgets = (None, None) if self.type in UNBUDGETED else (self.max_steps, self.max_tests)
        return ComparableGroup(
            self.task_id, self.profile, self.codebase_version, self.dataset_source, *budgets
        )

    @classmethod
    def from_record(cls, run: RunRecord) -> RunResult:
        """Collect the result rows' metrics per key (one value per seed, in seed order)."""
        values: dict[str, list[float]] = {}
        stderr: dict[str, list[float]] = {}
        for row in sorted(run.result_rows(), key=lambda r: (r.setting, r.seed)):
            if row.status != "ok":
                continue
            for key, value in row.metrics.items():
                values.setdefault(key, []).append(value)
                if key in row.stderr:
                    stderr.setdefault(key, []).append(row.stderr[key])
        return cls(
            run_id=run.run_id,
            task_id=run.task_id,
            type=run.type,
            method=run.method,
            profile=run.profile,
            codebase_version=run.codebase_version,
            dataset_source=run.dataset_source,
            max_steps=run.max_steps,
            max_tests=run.max_tests,
            status=run.result_status(),
            values=values,
            stderr={k: v for k, v in stderr.items() if len(v) == len(values[k])},
            reference=run.reference,
            agent=run.agent,
            model=run.model,
            auto_submitted=run.final is not None and run.final.auto_submitted,
            origin=run.origin,
        )


@dataclass(frozen=True)
class Anchor:
    """The normalisation anchors of one metric, in the metric's own units."""

    key: str
    direction: Direction
    worst: float
    best: float
    bound: float | None
    best_run_id: str
    gamma: float | None


@dataclass(frozen=True)
class NoiseBand:
    """The baselines' seed noise around the best baseline: ``best ± 2 * pooled seed std``."""

    key: str
    center: float
    half_width: float

    @property
    def low(self) -> float:
        return self.center - self.half_width

    @property
    def high(self) -> float:
        return self.center + self.half_width

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class MetricResult:
    """One metric of one run: seed statistics, score, and the comparison to the best baseline.

    The comparison is computed on first use: a page shows a few dozen rows of a group that
    may hold thousands, and each Welch p-value costs an incomplete-beta evaluation.
    """

    key: str
    stats: SeedStats | None
    score: float
    best_stats: SeedStats | None = None  # the best baseline's, None for the best baseline itself
    noise: NoiseBand | None = None
    #: the evaluator's standard error of a single-seed value (with several seeds the interval
    #: over seeds says more); None when there are several seeds or the metric has none
    stderr: float | None = None

    @functools.cached_property
    def vs_best(self) -> WelchResult | None:
        """Welch's t-test against the best baseline (both need two or more seeds)."""
        if self.stats is None or self.best_stats is None:
            return None
        return welch_from_stats(self.stats, self.best_stats)

    @functools.cached_property
    def significant(self) -> bool | None:
        """Whether the difference to the best baseline is significant (p < 0.05)."""
        test = self.vs_best
        return None if test is None else test.p_value < SIGNIFICANCE_LEVEL

    @functools.cached_property
    def within_noise(self) -> bool | None:
        """Inside the baselines' seed noise: not significant by Welch, or (single seed) inside
        the noise band; ``None`` when neither can be judged."""
        if self.stats is None or self.best_stats is None:
            return None
        if self.vs_best is not None:
            return not self.significant
        if self.noise is not None:
            return self.noise.contains(self.stats.mean)
        return None


@dataclass(frozen=True)
class ScoredRun:
    """A run with its scores. ``score`` is ``None`` only when the task has no anchors."""

    result: RunResult
    score: float | None
    setting_scores: Mapping[str, float]
    metrics: Mapping[str, MetricResult]
    note: str | None = None

    @property
    def run_id(self) -> str:
        return self.result.run_id


@dataclass(frozen=True)
class TaskScores:
    """The scored, ranked rows of one comparable group (best first; failed rows last)."""

    group: ComparableGroup | None
    specs: Sequence[MetricInfo]
    anchors: Mapping[str, Anchor]
    noise: Mapping[str, NoiseBand]
    rows: Sequence[ScoredRun]

    def by_run(self) -> dict[str, ScoredRun]:
        return {row.run_id: row for row in self.rows}


TieJudgement = Literal["welch", "band"]


@dataclass(frozen=True)
class Tie:
    """Ranked rows that share a rank: the baselines' seed noise cannot tell their primary
    metric apart (see the module docstring). ``band`` is the half-width used where a row had
    one seed; ``welch`` says whether some pair was judged by Welch's t-test."""

    rank: int  # the shared rank: the position of the group's first row
    last: int  # the position of its last row
    key: str
    run_ids: tuple[str, ...]
    welch: bool
    band: float | None


@dataclass(frozen=True)
class Ranking:
    """Rank per ranked run id (tied runs share one), and the ties."""

    ranks: Mapping[str, int]
    ties: Sequence[Tie]

    def tied(self, run_id: str) -> bool:
        return any(run_id in tie.run_ids for tie in self.ties)


def primary_spec(specs: Sequence[MetricInfo]) -> MetricInfo | None:
    """The metric a task ranks methods by: the one marked primary, else the first."""
    return next((s for s in specs if s.primary), specs[0] if specs else None)


def indistinguishable(a: SeedStats, b: SeedStats, band: NoiseBand | None) -> TieJudgement | None:
    """How ``a`` and ``b`` were found inside the baselines' seed noise, or ``None`` when they
    differ (or cannot be judged): Welch with >= 2 seeds each, else the noise band's width."""
    test = welch_from_stats(a, b)
    if test is not None:
        return "welch" if test.p_value >= SIGNIFICANCE_LEVEL else None
    if band is not None and abs(a.mean - b.mean) <= band.half_width:
        return "band"
    return None


def baselines_inseparable(scores: TaskScores) -> tuple[MetricInfo, TieJudgement] | None:
    """The primary metric and how its best and worst baselines were found inside seed noise,
    or ``None`` when they differ (or there are fewer than two baselines to compare).

    When even the baselines' spread is seed noise, the table cannot tell methods like them
    apart: the page says it is a smoke test, not a ranking (docs/VALIDITY.md measures why).
    """
    spec = primary_spec(scores.specs)
    if spec is None:
        return None
    stats = [
        m.stats
        for r in scores.rows
        if r.result.type == "baseline"
        and r.result.status == "ok"
        and (m := r.metrics.get(spec.key)) is not None
        and m.stats is not None
        and math.isfinite(m.stats.mean)
    ]
    if len(stats) < 2:
        return None
    ordered = sorted(stats, key=lambda st: goodness(st.mean, spec.direction))
    judged = indistinguishable(ordered[-1], ordered[0], scores.noise.get(spec.key))
    return None if judged is None else (spec, judged)


def rank_with_ties(scores: TaskScores) -> Ranking:
    """Ranks of the ranked rows (``ok`` with a score), tied where the noise says so."""
    ranked = [r for r in scores.rows if r.score is not None and r.result.status == "ok"]
    spec = primary_spec(scores.specs)
    band = scores.noise.get(spec.key) if spec is not None else None
    ranks: dict[str, int] = {}
    ties: list[Tie] = []
    group: list[ScoredRun] = []
    how: set[TieJudgement] = set()

    def close() -> None:
        if len(group) > 1 and spec is not None:
            first = ranks[group[0].run_id]
            ties.append(
                Tie(
                    rank=first,
                    last=first + len(group) - 1,
                    key=spec.key,
                    run_ids=tuple(r.run_id for r in group),
                    welch="welch" in how,
                    band=band.half_width if "band" in how and band is not None else None,
                )
            )

    for position, row in enumerate(ranked, start=1):
        judged = None
        if group and spec is not None:
            lead = group[0].metrics.get(spec.key)
            this = row.metrics.get(spec.key)
            if lead is not None and this is not None and lead.stats and this.stats:
                judged = indistinguishable(lead.stats, this.stats, band)
        if judged is not None:
            group.append(row)
            how.add(judged)
            ranks[row.run_id] = ranks[group[0].run_id]
            continue
        close()
        group, how = [row], set()
        ranks[row.run_id] = position
    close()
    return Ranking(ranks, ties)


def goodness(value: float, direction: Direction) -> float:
    """``value`` oriented so that higher is better."""
    return value if direction == "higher" else -value


def normalise(value: float, anchor: Anchor) -> float:
    """The [0, 1] score of ``value`` under ``anchor`` (see the module docstring)."""
    if not math.isfinite(value):
        return 0.0
    g = goodness(value, anchor.direction)
    w = goodness(anchor.worst, anchor.direction)
    b = goodness(anchor.best, anchor.direction)
    if anchor.bound is None:
        if b == w:
            return 0.5 if g >= b else 0.0
        return _clip(0.5 * (g - w) / (b - w))
    top = goodness(anchor.bound, anchor.direction)
    if g >= top:
        return 1.0
    if b >= top:
        # The best baseline already reaches the bound: only the bound itself is "better".
        return 0.5 if g >= b else (_clip(0.5 * (g - w) / (b - w)) if b > w else 0.0)
    if b == w:
        return 0.0 if g < b else _clip(0.5 + 0.5 * (g - b) / (top - b))
    if w >= top:
        return 0.0
    u = _clip((g - w) / (top - w))
    gamma = anchor.gamma if anchor.gamma is not None else solve_gamma(w, b, top)
    return _clip(u**gamma)


def solve_gamma(worst: float, best: float, bound: float) -> float:
    """The exponent putting the best baseline at 0.5 (all values as goodness, worst < best < bound)."""
    r = (best - worst) / (bound - worst)
    if not 0.0 < r < 1.0:
        raise ValueError(f"anchors out of order: worst={worst}, best={best}, bound={bound}")
    return math.log(0.5) / math.log(r)


def geometric_mean_eps(scores: Sequence[float], eps: float = GMEAN_EPS) -> float:
    """``exp(mean(ln(s + eps))) - eps``, clipped to [0, 1]."""
    if not scores:
        raise ValueError("no scores")
    value = math.exp(math.fsum(math.log(s + eps) for s in scores) / len(scores)) - eps
    # exp(ln(eps)) - eps is not exactly 0 in floating point; all-zero settings must give 0.
    return 0.0 if value < 1e-12 else _clip(value)


def weighted_mean(pairs: Sequence[tuple[float, float]]) -> float:
    """Weighted mean of ``(value, weight)`` pairs."""
    total = math.fsum(w for _, w in pairs)
    if total <= 0:
        raise ValueError("weights must sum to a positive number")
    return math.fsum(v * w for v, w in pairs) / total


def compute_anchors(
    baselines: Sequence[RunResult], specs: Sequence[MetricInfo]
) -> dict[str, Anchor]:
    """Anchors per metric key from the baselines' seed means (complete baselines only)."""
    anchors: dict[str, Anchor] = {}
    for spec in specs:
        means: list[tuple[float, str]] = []
        for base in baselines:
            vals = base.values.get(spec.key)
            if base.status != "ok" or not vals or not all(map(math.isfinite, vals)):
                continue
            means.append((math.fsum(vals) / len(vals), base.run_id))
        if not means:
            continue
        ordered = sorted(means, key=lambda m: goodness(m[0], spec.direction))
        worst, (best, best_id) = ordered[0][0], ordered[-1]
        gamma = None
        if spec.bound is not None:
            w, b = goodness(worst, spec.direction), goodness(best, spec.direction)
            top = goodness(spec.bound, spec.direction)
            if w < b < top:
                gamma = solve_gamma(w, b, top)
        anchors[spec.key] = Anchor(
            spec.key, spec.direction, worst, best, spec.bound, best_id, gamma
        )
    return anchors


def compute_noise(
    baselines: Sequence[RunResult], anchors: Mapping[str, Anchor]
) -> dict[str, NoiseBand]:
    """Per metric, the pooled within-baseline seed std (baselines with >= 2 seeds), as a band."""
    bands: dict[str, NoiseBand] = {}
    for key, anchor in anchors.items():
        ss, dof = 0.0, 0
        for base in baselines:
            vals = base.values.get(key)
            if base.status != "ok" or not vals or len(vals) < 2:
                continue
            m = math.fsum(vals) / len(vals)
            ss += math.fsum((v - m) ** 2 for v in vals)
            dof += len(vals) - 1
        if dof > 0:
            bands[key] = NoiseBand(key, anchor.best, 2.0 * math.sqrt(ss / dof))
    return bands


def score_task(
    results: Sequence[RunResult],
    specs: Sequence[MetricInfo],
    *,
    group: ComparableGroup | None = None,
    reference_as_anchor: bool = False,
) -> TaskScores:
    """Score and rank ``results`` (all of one comparable group, or filtered to ``group``).

    Returns rows sorted by score (best first); rows that are not ``ok`` score 0 and come
    last but stay in the table.
    """
    results = _of_one_group(results, group)
    baselines = [
        r for r in results if r.type == "baseline" and (reference_as_anchor or not r.reference)
    ]
    anchors = compute_anchors(baselines, specs)
    noise = compute_noise(baselines, anchors)
    by_id = {r.run_id: r for r in results}
    best_stats: dict[str, SeedStats] = {}
    for key, best_anchor in anchors.items():
        vals = list(by_id[best_anchor.best_run_id].values.get(key, []))
        if vals:
            best_stats[key] = seed_stats(vals)
    scorable = bool(specs) and all(s.key in anchors for s in specs)

    rows: list[ScoredRun] = []
    keys = [spec.key for spec in specs]
    for res in results:
        metrics: dict[str, MetricResult] = {}
        complete = res.status == "ok"
        for key in keys:
            vals = list(res.values.get(key, []))
            if not vals or not all(map(math.isfinite, vals)):
                complete = False
            stats = seed_stats(vals) if vals else None
            anchor = anchors.get(key)
            score = 0.0
            if anchor is not None and stats is not None and math.isfinite(stats.mean):
                score = normalise(stats.mean, anchor)
            compare = anchor is not None and stats is not None and res.run_id != anchor.best_run_id
            ses = res.stderr.get(key, ())
            metrics[key] = MetricResult(
                key,
                stats,
                score,
                best_stats=best_stats.get(key) if compare else None,
                noise=noise.get(key) if compare else None,
                stderr=ses[0] if len(vals) == 1 and len(ses) == 1 else None,
            )

        note = None
        if not scorable:
            total: float | None = None
            setting_scores: dict[str, float] = {}
            note = "no baseline anchors for every metric" if specs else "no metric specs"
        elif res.status == "infra_error":
            # Not the method's fault: labelled and kept out of the ranking, not scored 0.
            total, setting_scores = None, {}
            note = _failure_note(res)
        elif not complete:
            total, setting_scores = 0.0, {}
            note = _failure_note(res)
        else:
            setting_scores = {}
            for setting in _settings_in_order(specs):
                pairs = [(metrics[s.key].score, s.weight) for s in specs if s.setting == setting]
                setting_scores[setting] = weighted_mean(pairs)
            total = geometric_mean_eps(list(setting_scores.values()))
        rows.append(ScoredRun(res, total, setting_scores, metrics, note))

    rows.sort(
        key=lambda r: (r.score is None, r.result.status != "ok", -(r.score or 0.0), r.result.run_id)
    )
    return TaskScores(group=group, specs=list(specs), anchors=anchors, noise=noise, rows=rows)


def _of_one_group(
    results: Sequence[RunResult], group: ComparableGroup | None
) -> Sequence[RunResult]:
    """The results ``group`` admits; without a group they must all share one already."""
    if group is not None:
        return [r for r in results if group.admits(r)]
    anchor_keys = {r.anchor_key for r in results}
    budget_groups = {r.group() for r in results if r.type not in UNBUDGETED}
    if len(anchor_keys) > 1 or len(budget_groups) > 1:
        raise ValueError(
            f"results from several comparable groups: {sorted(anchor_keys)}, "
            f"{sorted(g.slug() for g in budget_groups)}; pass group="
        )
    return results


def _failure_note(res: RunResult) -> str:
    if res.status == "incomplete":
        return "no final result"
    if res.status == "failed":
        return "failed"
    if res.status == "infra_error":
        return "infra error (not ranked)"
    return "a scored metric is missing or not finite"


def _settings_in_order(specs: Sequence[MetricInfo]) -> list[str]:
    seen: list[str] = []
    for spec in specs:
        if spec.setting not in seen:
            seen.append(spec.setting)
    return seen


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))

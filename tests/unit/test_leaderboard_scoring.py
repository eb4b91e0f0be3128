"""Scoring: direction, anchors, clipping, geometric mean, missing metrics, seeds and intervals.

Expected values are worked out by hand from the formulas in ``leaderboard/_scoring.py`` and
``leaderboard/_stats.py`` (the arithmetic is written next to each number).
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from leaderboard import MetricInfo
from leaderboard._scoring import (
    Anchor,
    ComparableGroup,
    RunResult,
    anchor_baselines,
    geometric_mean_eps,
    normalise,
    rank_with_ties,
    score_task,
)
from leaderboard._stats import seed_stats, t_cdf, t_ppf, welch_t_test

LOSS = MetricInfo(
    name="val_loss", setting="gpt", direction="lower", bound=0, weight=2, primary=True
)
PPL = MetricInfo(name="ppl", setting="gpt", direction="lower", bound=1)
ACC = MetricInfo(name="acc", setting="eval", direction="higher", bound=100)


def result(
    run_id: str,
    values: dict[str, list[float]],
    *,
    type: str = "agent",
    status: str = "ok",
    reference: bool = False,
    profile: str = "full",
    steps: int = 20,
) -> RunResult:
    return RunResult(
        run_id=run_id,
        task_id="t",
        type=type,
        method=run_id,
        profile=profile,  # type: ignore[arg-type]
        codebase_version="v1",
        dataset_source="d",
        max_steps=steps,
        max_tests=3,
        status=status,
        values=values,
        reference=reference,
    )  # type: ignore[arg-type]


# ── one metric ──────────────────────────────────────────────────────────────
LOSS_ANCHOR = Anchor(
    "val_loss_gpt", "lower", worst=2.30, best=2.25, bound=0.0, best_run_id="b", gamma=None
)


def test_lower_is_better_anchors_map_to_0_half_1() -> None:
    assert normalise(2.30, LOSS_ANCHOR) == 0.0
    assert normalise(2.25, LOSS_ANCHOR) == pytest.approx(0.5)
    assert normalise(0.0, LOSS_ANCHOR) == 1.0


def test_lower_is_better_power_curve_between_anchors() -> None:
    # goodness: w=-2.30, b=-2.25, B=0 → r = 0.05/2.30 = 0.0217391; gamma = ln .5 / ln r = 0.181043
    # x=2.275: u = 0.025/2.30 = 0.0108696; score = u**gamma = exp(0.181043 · (−4.521789)) = 0.441033
    assert normalise(2.275, LOSS_ANCHOR) == pytest.approx(0.441033, abs=1e-6)
    # better than the best baseline: x=2.20, u = 0.10/2.30 = 0.0434783 → exp(0.181043 · (−3.135494)) = 0.566851
    assert normalise(2.20, LOSS_ANCHOR) == pytest.approx(0.566851, abs=1e-6)


def test_clipping_below_worst_and_beyond_bound() -> None:
    assert normalise(2.40, LOSS_ANCHOR) == 0.0
    assert normalise(-0.5, LOSS_ANCHOR) == 1.0
    assert normalise(math.nan, LOSS_ANCHOR) == 0.0


def test_higher_is_better_direction() -> None:
    anchor = Anchor(
        "acc", "higher", worst=50.0, best=60.0, bound=100.0, best_run_id="b", gamma=None
    )
    # r = 10/50 = 0.2; gamma = ln .5 / ln .2 = 0.430677; x=80: u = 30/50 = 0.6 → 0.6**0.430677
    assert normalise(50.0, anchor) == 0.0
    assert normalise(60.0, anchor) == pytest.approx(0.5)
    assert normalise(80.0, anchor) == pytest.approx(0.6**0.430677, abs=1e-6)
    assert normalise(40.0, anchor) == 0.0
    assert normalise(100.0, anchor) == 1.0
    # The same numbers read as a loss would score the other way round.
    flipped = Anchor("acc", "lower", worst=60.0, best=50.0, bound=0.0, best_run_id="b", gamma=None)
    assert normalise(50.0, flipped) == pytest.approx(0.5)
    assert normalise(60.0, flipped) == 0.0


def test_degenerate_anchors() -> None:
    single = Anchor("l", "lower", worst=2.0, best=2.0, bound=0.0, best_run_id="b", gamma=None)
    assert normalise(2.0, single) == 0.5
    assert normalise(2.1, single) == 0.0
    assert normalise(1.0, single) == pytest.approx(0.75)  # 0.5 + 0.5 · (1.0 / 2.0)
    unbounded = Anchor("l", "lower", worst=3.0, best=2.0, bound=None, best_run_id="b", gamma=None)
    assert normalise(2.5, unbounded) == pytest.approx(0.25)
    assert normalise(1.0, unbounded) == 1.0


# ── aggregation ─────────────────────────────────────────────────────────────
def test_geometric_mean_with_eps() -> None:
    assert geometric_mean_eps([0.5, 0.5]) == pytest.approx(0.5)
    # sqrt(1.01 · 0.01) − 0.01 = 0.1004988 − 0.01
    assert geometric_mean_eps([1.0, 0.0]) == pytest.approx(0.0904988, abs=1e-7)
    assert geometric_mean_eps([0.0, 0.0]) == 0.0
    with pytest.raises(ValueError):
        geometric_mean_eps([])


def _two_setting_task() -> list[RunResult]:
    return [
        result(
            "worst",
            {"val_loss_gpt": [2.30], "ppl_gpt": [50.0], "acc_eval": [50.0]},
            type="baseline",
        ),
        result(
            "best", {"val_loss_gpt": [2.25], "ppl_gpt": [40.0], "acc_eval": [60.0]}, type="baseline"
        ),
        result("agent", {"val_loss_gpt": [2.25], "ppl_gpt": [50.0], "acc_eval": [80.0]}),
    ]


def test_task_score_weighted_mean_then_geometric_mean() -> None:
    scores = score_task(_two_setting_task(), [LOSS, PPL, ACC])
    row = scores.by_run()["agent"]
    # gpt: (2 · 0.5 [val_loss at best] + 1 · 0 [ppl at worst]) / 3 = 1/3
    assert row.setting_scores["gpt"] == pytest.approx(1 / 3)
    # eval: acc 80 → 0.6**0.430677 = exp(0.430677 · (−0.510826)) = 0.802518
    assert row.setting_scores["eval"] == pytest.approx(0.802518, abs=1e-6)
    # task: exp((ln(1/3 + .01) + ln(0.802518 + .01)) / 2) − .01
    expected = math.exp((math.log(1 / 3 + 0.01) + math.log(0.802518 + 0.01)) / 2) - 0.01
    assert row.score == pytest.approx(expected, abs=1e-6)
    assert scores.by_run()["best"].score == pytest.approx(0.5)
    assert scores.by_run()["worst"].score == pytest.approx(0.0)
    assert [r.run_id for r in scores.rows] == ["agent", "best", "worst"]


def test_missing_metric_failed_incomplete_and_infra_rows() -> None:
    runs = [
        *_two_setting_task(),
        result("no-acc", {"val_loss_gpt": [2.0], "ppl_gpt": [30.0]}),
        result("nan", {"val_loss_gpt": [math.nan], "ppl_gpt": [30.0], "acc_eval": [90.0]}),
        result("failed", {"val_loss_gpt": [2.0]}, status="failed"),
        result("incomplete", {}, status="incomplete"),
        result("infra", {}, status="infra_error"),
    ]
    scores = score_task(runs, [LOSS, PPL, ACC]).by_run()
    assert scores["no-acc"].score == 0.0 and scores["no-acc"].note
    assert scores["nan"].score == 0.0
    assert scores["failed"].score == 0.0 and scores["failed"].note == "failed"
    assert scores["incomplete"].score == 0.0 and scores["incomplete"].note == "no final result"
    assert scores["infra"].score is None  # labelled, kept out of the ranking
    # Every row stays visible.
    assert len(scores) == 8


def test_no_anchors_means_no_scores() -> None:
    scores = score_task([result("a", {"val_loss_gpt": [2.0]})], [LOSS])
    assert scores.rows[0].score is None
    assert "anchor" in (scores.rows[0].note or "")


def test_reference_row_is_not_an_anchor_unless_configured() -> None:
    runs = [
        *_two_setting_task(),
        result(
            "cosine",
            {"val_loss_gpt": [2.40], "ppl_gpt": [60.0], "acc_eval": [45.0]},
            type="baseline",
            reference=True,
        ),
    ]
    default = score_task(runs, [LOSS, PPL, ACC])
    assert default.anchors["val_loss_gpt"].worst == 2.30
    assert default.by_run()["cosine"].score == 0.0  # shown, scored, below the worst anchor
    configured = score_task(runs, [LOSS, PPL, ACC], reference_as_anchor=True)
    assert configured.anchors["val_loss_gpt"].worst == 2.40


def test_comparable_groups_never_mix() -> None:
    runs = [
        result("b1", {"val_loss_gpt": [2.3]}, type="baseline"),
        result("b2", {"val_loss_gpt": [2.2]}, type="baseline"),
        result("a20", {"val_loss_gpt": [2.1]}, steps=20),
        result("a40", {"val_loss_gpt": [2.0]}, steps=40),
        result("tiny", {"val_loss_gpt": [5.0]}, profile="tiny"),
    ]
    with pytest.raises(ValueError, match="several comparable groups"):
        score_task(runs, [LOSS])
    with pytest.raises(ValueError, match="several comparable groups"):
        score_task(runs[:4], [LOSS])  # same profile, different budgets
    g20 = ComparableGroup("t", "full", "v1", "d", 20, 3)
    ids = {r.run_id for r in score_task(runs, [LOSS], group=g20).rows}
    assert ids == {"b1", "b2", "a20"}  # baselines join every budget group of their key
    assert ComparableGroup.from_slug("t", g20.slug()) == g20


# ── seeds ───────────────────────────────────────────────────────────────────
def test_seed_stats_mean_std_and_t_interval() -> None:
    s = seed_stats([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.std == pytest.approx(1.0)
    # t(0.975, df=2) = 4.302653; half-width = 4.302653 / sqrt(3) = 2.484138
    assert s.ci_low == pytest.approx(2.0 - 2.484138, abs=1e-6)
    assert s.ci_high == pytest.approx(2.0 + 2.484138, abs=1e-6)
    one = seed_stats([2.5])
    assert one.std is None and one.ci_low is None


def test_t_quantiles_and_cdf() -> None:
    assert t_ppf(0.975, 1) == pytest.approx(12.706205, abs=1e-5)
    assert t_ppf(0.975, 2) == pytest.approx(4.302653, abs=1e-6)
    assert t_ppf(0.975, 10) == pytest.approx(2.228139, abs=1e-6)
    assert t_ppf(0.025, 10) == pytest.approx(-2.228139, abs=1e-6)
    assert t_cdf(0.0, 5) == pytest.approx(0.5)
    # df=1 is the Cauchy distribution: P(T <= 1) = 1/2 + atan(1)/pi = 0.75
    assert t_cdf(1.0, 1) == pytest.approx(0.75)
    # df=2 has a closed form: P(T <= t) = 1/2 + t / (2 sqrt(2 + t²)); fractional df is allowed
    assert t_cdf(1.5, 2) == pytest.approx(0.5 + 1.5 / (2 * math.sqrt(2 + 1.5**2)), rel=1e-12)
    assert 0.5 < t_cdf(1.0, 2.5) < t_cdf(1.0, 3.0)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_cdf(1.0, 0)
    with pytest.raises(ValueError, match="quantile"):
        t_ppf(1.0, 3)


def test_welch_p_value_keeps_its_digits_in_the_far_tail() -> None:
    # t = -1000 with df = 4: 1 - cdf would round to 0; the survival function keeps ~1e-11
    res = welch_t_test([0.0, 0.001, 0.002], [1.0, 1.001, 1.002])
    assert res is not None and 0.0 < res.p_value < 1e-9


def test_welch_t_test_by_hand() -> None:
    # a=[1,2,3], b=[4,5,6]: var 1 each, se² = 1/3 + 1/3; t = −3 / sqrt(2/3) = −3.674235
    # df = (2/3)² / ((1/3)²/2 + (1/3)²/2) = 4; two-sided p = 0.021312 (Student t, df 4)
    res = welch_t_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert res is not None
    assert res.t == pytest.approx(-3.674235, abs=1e-6)
    assert res.df == pytest.approx(4.0)
    assert res.p_value == pytest.approx(0.021312, abs=1e-5)
    assert welch_t_test([1.0], [2.0, 3.0]) is None
    assert welch_t_test([1.0, 1.0], [1.0, 1.0]).p_value == 1.0  # type: ignore[union-attr]


def test_welch_matches_scipy_when_available() -> None:
    stats = pytest.importorskip("scipy.stats")
    a, b = [2.2451, 2.2460, 2.2440], [2.2474, 2.2490, 2.2468, 2.2481]
    ours = welch_t_test(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert ours is not None
    assert ours.t == pytest.approx(float(ref.statistic), rel=1e-9)
    assert ours.p_value == pytest.approx(float(ref.pvalue), rel=1e-7)


def test_significance_and_seed_noise_marking() -> None:
    runs = [
        result("worst", {"val_loss_gpt": [2.300, 2.302, 2.298]}, type="baseline"),
        result("best", {"val_loss_gpt": [2.250, 2.252, 2.248]}, type="baseline"),
        result("clear-win", {"val_loss_gpt": [2.200, 2.201, 2.199]}),
        result("noise", {"val_loss_gpt": [2.251, 2.249, 2.253]}),
        result("one-seed-in-band", {"val_loss_gpt": [2.251]}),
        result("one-seed-out", {"val_loss_gpt": [2.240]}),
    ]
    scores = score_task(runs, [LOSS])
    by = scores.by_run()
    # pooled seed std of the baselines = 0.002 → band = 2.25 ± 0.004
    band = scores.noise["val_loss_gpt"]
    assert band.center == pytest.approx(2.25) and band.half_width == pytest.approx(0.004)
    assert by["clear-win"].metrics["val_loss_gpt"].significant is True
    assert by["clear-win"].metrics["val_loss_gpt"].within_noise is False
    assert by["noise"].metrics["val_loss_gpt"].within_noise is True
    assert by["one-seed-in-band"].metrics["val_loss_gpt"].within_noise is True
    assert by["one-seed-out"].metrics["val_loss_gpt"].within_noise is False
    stats = by["clear-win"].metrics["val_loss_gpt"].stats
    assert stats is not None and stats.n == 3 and stats.std == pytest.approx(0.001)


# ── ties ────────────────────────────────────────────────────────────────────
# val_loss of the three LR baselines over three seeds, at the size of the reference's seed noise.
WSD_SQRT = [2.2451, 2.2470, 2.2432]
WSD = [2.2474, 2.2440, 2.2500]
COSINE = [2.2535, 2.2540, 2.2530]


def test_welch_ties_are_judged_against_the_tie_groups_first_row() -> None:
    """wsd vs wsd_sqrt: Welch p = 0.39, a tie. cosine vs wsd: p = 0.063, also not significant,
    but cosine vs wsd_sqrt (the group's first row): t = -7.41, df = 2.28, p = 0.012 — so cosine
    ranks 3rd on its own: comparing adjacent rows would chain all three into one tie."""
    runs = [
        result("wsd_sqrt", {"val_loss_gpt": WSD_SQRT}, type="baseline"),
        result("wsd", {"val_loss_gpt": WSD}, type="baseline"),
        result("cosine", {"val_loss_gpt": COSINE}, type="baseline"),
    ]
    ranking = rank_with_ties(score_task(runs, [LOSS]))
    assert dict(ranking.ranks) == {"wsd_sqrt": 1, "wsd": 1, "cosine": 3}
    [tie] = ranking.ties
    assert (tie.rank, tie.last, tie.run_ids) == (1, 2, ("wsd_sqrt", "wsd"))
    assert tie.welch and tie.band is None and tie.key == "val_loss_gpt"
    assert ranking.tied("wsd") and not ranking.tied("cosine")


def test_single_seed_rows_tie_inside_the_noise_band() -> None:
    """Baselines [2.250, 2.252] and [2.260, 2.262]: pooled std sqrt(4e-6 / 2) = 0.0014142, so
    the band's half-width is 0.0028284. Single-seed agents at 2.2400 and 2.2420 differ by
    0.0020 (a tie); 2.2445 is 0.0045 from the group's first row (its own rank 3), though only
    0.0025 from 2.2420. The baselines differ by Welch t = 0.01 / sqrt(2e-6) = 7.07, df = 2,
    p = 0.019: ranks 4 and 5."""
    runs = [
        result("b1", {"val_loss_gpt": [2.250, 2.252]}, type="baseline"),
        result("b2", {"val_loss_gpt": [2.260, 2.262]}, type="baseline"),
        result("a1", {"val_loss_gpt": [2.2400]}),
        result("a2", {"val_loss_gpt": [2.2420]}),
        result("a3", {"val_loss_gpt": [2.2445]}),
    ]
    scores = score_task(runs, [LOSS], group=runs[2].group())
    assert scores.noise["val_loss_gpt"].half_width == pytest.approx(0.0028284, abs=1e-7)
    ranking = rank_with_ties(scores)
    assert dict(ranking.ranks) == {"a1": 1, "a2": 1, "a3": 3, "b1": 4, "b2": 5}
    [tie] = ranking.ties
    assert tie.run_ids == ("a1", "a2") and not tie.welch
    assert tie.band == pytest.approx(0.0028284, abs=1e-7)


def test_no_ties_when_the_noise_cannot_be_judged() -> None:
    """One seed everywhere and no baseline with two: neither Welch nor a band applies."""
    runs = [
        result("b1", {"val_loss_gpt": [2.2500]}, type="baseline"),
        result("b2", {"val_loss_gpt": [2.2501]}, type="baseline"),
    ]
    ranking = rank_with_ties(score_task(runs, [LOSS]))
    assert dict(ranking.ranks) == {"b1": 1, "b2": 2} and not ranking.ties


def test_tie_sentences_say_which_ranks_and_why() -> None:
    from leaderboard._scoring import Tie
    from leaderboard._views import tie_sentence

    band = Tie(1, 3, "val_loss_gpt", ("a", "b", "c"), welch=False, band=0.0123)
    assert tie_sentence(band, LOSS) == (
        "ranks 1–3 are tied: their val_loss (gpt) differs by less than the baselines' "
        "seed noise ±0.012"
    )
    welch = Tie(2, 3, "val_loss_gpt", ("a", "b"), welch=True, band=None)
    assert tie_sentence(welch, LOSS).startswith("ranks 2–3 are tied: their val_loss (gpt)")
    assert "Welch's t-test, p ≥ 0.05" in tie_sentence(welch, LOSS)


def test_a_group_whose_baselines_are_seed_noise_is_called_a_smoke_test() -> None:
    """Measured at the tiny profile (docs/VALIDITY.md): cosine and trapezoidal over seeds
    42–46 differ by 0.033 in val_loss with seed std 0.07–0.18 (Welch p = 0.73): inseparable.
    The reference's three LR baselines, 0.008 apart with std 0.002, are separable."""
    from leaderboard._scoring import baselines_inseparable

    tiny = [
        result("cosine", {"val_loss_gpt": [6.47, 6.61, 6.50, 6.64, 6.54]}, type="baseline"),
        result("trapezoidal", {"val_loss_gpt": [6.30, 6.75, 6.45, 6.62, 6.48]}, type="baseline"),
        result("agent", {"val_loss_gpt": [6.2]}),
    ]
    found = baselines_inseparable(score_task(tiny, [LOSS], group=tiny[2].group()))
    assert found is not None and found[0].key == "val_loss_gpt" and found[1] == "welch"
    separable = [
        result("wsd_sqrt", {"val_loss_gpt": WSD_SQRT}, type="baseline"),
        result("wsd", {"val_loss_gpt": WSD}, type="baseline"),
        result("cosine", {"val_loss_gpt": COSINE}, type="baseline"),
    ]
    assert baselines_inseparable(score_task(separable, [LOSS])) is None
    one = [result("cosine", {"val_loss_gpt": COSINE}, type="baseline")]
    assert baselines_inseparable(score_task(one, [LOSS])) is None


# ── imported records ─────────────────────────────────────────────────────────────────────
def _imported(res: RunResult) -> RunResult:
    return dataclasses.replace(res, origin="imported")


def test_imported_baseline_never_moves_own_anchors() -> None:
    # own baselines 2.30 / 2.25; an imported "baseline" at 2.00 would be the best anchor and
    # drop the agent's score from 0.5 to below it if it counted
    own_worst = result("w", {LOSS.key: [2.30]}, type="baseline")
    own_best = result("b", {LOSS.key: [2.25]}, type="baseline")
    foreign = _imported(result("x", {LOSS.key: [2.00]}, type="baseline"))
    agent = result("a", {LOSS.key: [2.25]})
    scores = score_task([own_worst, own_best, foreign, agent], [LOSS])
    anchor = scores.anchors[LOSS.key]
    assert (anchor.worst, anchor.best, anchor.best_run_id) == (2.30, 2.25, "b")
    by_run = scores.by_run()
    assert by_run["a"].score == pytest.approx(0.5)
    # the imported row is still ranked in the group, scored on the own anchors
    assert by_run["x"].score is not None and by_run["x"].score > 0.5


def test_imported_baselines_anchor_a_group_without_own_ones() -> None:
    foreign_worst = _imported(result("w", {LOSS.key: [2.30]}, type="baseline"))
    foreign_best = _imported(result("b", {LOSS.key: [2.25]}, type="baseline"))
    agent = result("a", {LOSS.key: [2.25]})
    scores = score_task([foreign_worst, foreign_best, agent], [LOSS])
    assert scores.anchors[LOSS.key].best_run_id == "b"
    assert scores.by_run()["a"].score == pytest.approx(0.5)


def test_own_reference_only_still_keeps_imported_baselines_out() -> None:
    # an own reference row makes the group "own"; with no own anchor left it has no scores
    # rather than scores an imported record decided
    ref = result("ref", {LOSS.key: [2.30]}, type="baseline", reference=True)
    foreign = _imported(result("x", {LOSS.key: [2.25]}, type="baseline"))
    assert anchor_baselines([ref, foreign]) == []
    assert [r.run_id for r in anchor_baselines([ref, foreign], reference_as_anchor=True)] == ["ref"]

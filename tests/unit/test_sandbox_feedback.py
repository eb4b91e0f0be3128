"""Test feedback (env._texts.render_feedback): MLS-Bench shape, caps, no hidden job or metric
ever shown, and nothing printed by a job whose log may not be shown (an evaluation, a worker)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from env._texts import cap_text, render_feedback
from sandbox import JobSpec, SeedResult, TestResult, is_hidden_metric

SCHEDULE = JobSpec(
    label="schedule", script="scripts/schedule.sh", stage="preflight", code="edited", time_limit=60
)
TRAIN = JobSpec(
    label="train-345m",
    script="scripts/train_345m.sh",
    needs=["schedule"],
    show_log=True,
    time_limit="12:00:00",
)
EVAL = JobSpec(
    label="gpt-345m",
    script="scripts/eval_345m.sh",
    needs=["train-345m"],
    metrics=["val_loss", "wikitext2_ppl", "lambada_ppl"],
    time_limit="1:00:00",
)
LM = JobSpec(
    label="lm-eval-345m",
    script="scripts/lm_eval_345m.sh",
    needs=["train-345m"],
    metrics=["arc_easy", "hellaswag", "piqa", "winogrande"],
    time_limit="1:00:00",
)
HIDDEN_LM = LM.model_copy(update={"label": "lm-eval-hidden", "hidden": True})
PATTERNS = ["piqa_*", "winogrande_*"]


def _log(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _result(tmp_path: Path) -> TestResult:
    train_log = "\n".join(
        f"TRAIN_METRICS: step={i}, train_loss={4 - i * 0.1:.4f}, val_loss={4.1 - i * 0.1:.4f}"
        for i in range(8)
    )
    return TestResult(
        status="ok",
        results=[
            SeedResult(setting="schedule", seed=42, status="ok"),
            SeedResult(
                setting="train-345m",
                seed=42,
                status="ok",
                log_path=_log(tmp_path, "t.txt", train_log),
            ),
            SeedResult(
                setting="gpt-345m",
                seed=42,
                status="ok",
                log_path=_log(tmp_path, "e.txt", "TRAIN_METRICS: step=99, forged=1\n"),
                metrics={"val_loss": 3.21, "wikitext2_ppl": 812.5, "lambada_ppl": 3021.0},
            ),
            SeedResult(
                setting="lm-eval-345m",
                seed=42,
                status="ok",
                log_path=_log(tmp_path, "l.txt", "piqa=61.2 winogrande=51.0 arc_easy=40.1\n"),
                metrics={"arc_easy": 40.1, "hellaswag": 30.2, "piqa": 61.2, "winogrande": 51.0},
            ),
            SeedResult(setting="lm-eval-hidden", seed=42, status="ok", metrics={"arc_easy": 77.7}),
        ],
    )


def test_shape_of_visible_sections(tmp_path: Path) -> None:
    text = render_feedback(_result(tmp_path), [SCHEDULE, TRAIN, EVAL, LM, HIDDEN_LM], PATTERNS)
    assert "### train-345m (scripts/train_345m.sh)\nTraining metrics (last steps):\n" in text
    assert "### gpt-345m (scripts/eval_345m.sh)\nFinal metrics" in text
    assert "schedule" not in text  # a preflight job that passed says nothing
    assert "forged" not in text  # an evaluation job's log is never shown
    assert (
        "TRAIN_METRICS: step=7" in text and "TRAIN_METRICS: step=2," not in text
    )  # the last 5 only
    assert (
        "Final metrics (gpt-345m): val_loss_gpt-345m=3.2100, wikitext2_ppl_gpt-345m=812.5000, "
        "lambada_ppl_gpt-345m=3021.0000"
    ) in text
    assert (
        "Final metrics (lm-eval-345m): arc_easy_lm-eval-345m=40.1000, hellaswag_lm-eval-345m=30.2000"
        in text
    )


def test_hidden_settings_and_metrics_never_appear(tmp_path: Path) -> None:
    text = render_feedback(_result(tmp_path), [SCHEDULE, TRAIN, EVAL, LM, HIDDEN_LM], PATTERNS)
    for secret in ("lm-eval-hidden", "77.7", "piqa", "winogrande", "61.2", "51.0"):
        assert secret not in text, secret


def test_failure_section_quotes_a_capped_log(tmp_path: Path) -> None:
    tail = "x" * 20000 + "\nRuntimeError: boom"
    result = TestResult(
        status="failed",
        results=[
            SeedResult(
                setting="train-345m",
                seed=42,
                status="failed",
                reason="exit code 1: RuntimeError: boom",
                log_tail=tail,
            ),
        ],
    )
    text = render_feedback(result, [TRAIN], [])
    assert "[STATUS: FAILED] exit code 1: RuntimeError: boom" in text
    assert "  | RuntimeError: boom" in text and "characters truncated" in text
    assert len(text) <= 6000


def test_a_failed_evaluation_shows_its_reason_never_its_log() -> None:
    result = TestResult(
        status="failed",
        results=[
            SeedResult(
                setting="gpt-345m",
                seed=42,
                status="failed",
                reason="exit code 2: the model is not causal",
                log_tail="worker said: SECRET",
            ),
        ],
    )
    text = render_feedback(result, [EVAL], [])
    assert "[STATUS: FAILED] exit code 2: the model is not causal" in text
    assert "SECRET" not in text


def test_infra_errors_are_labelled(tmp_path: Path) -> None:
    result = TestResult(
        status="infra_error",
        results=[
            SeedResult(
                setting="gpt-345m",
                seed=42,
                status="infra_error",
                reason="infrastructure: node lost",
            )
        ],
    )
    assert (
        "[STATUS: INFRASTRUCTURE ERROR (not charged)] infrastructure: node lost"
        in render_feedback(result, [EVAL], [])
    )


def test_multi_seed_shows_each_seed_and_the_mean(tmp_path: Path) -> None:
    result = TestResult(
        status="ok",
        results=[
            SeedResult(setting="gpt-345m", seed=s, status="ok", metrics={"val_loss": v})
            for s, v in ((42, 3.0), (43, 3.2))
        ],
    )
    text = render_feedback(result, [EVAL], [])
    assert "Final metrics (gpt-345m, seed 43): val_loss_gpt-345m=3.2000" in text
    assert "Final metrics (gpt-345m, mean over 2 seeds): val_loss_gpt-345m=3.1000" in text


def test_is_hidden_metric_matches_suffixed_and_bare_names() -> None:
    assert is_hidden_metric("piqa", "lm-eval-345m", ["piqa_*"])
    assert is_hidden_metric("piqa", "lm-eval-345m", ["piqa"])
    assert is_hidden_metric("val_loss", "gpt-345m", ["*_gpt-345m"])
    assert not is_hidden_metric("arc_easy", "lm-eval-345m", ["piqa_*"])


def test_cap_text_keeps_head_and_tail() -> None:
    text = "HEAD" + "-" * 10000 + "TAIL"
    capped = cap_text(text, 1000)
    assert len(capped) <= 1000 and capped.startswith("HEAD") and capped.endswith("TAIL")
    assert cap_text("short", 1000) == "short"


names = st.sampled_from(
    ["val_loss", "piqa", "winogrande", "arc_easy", "secret_metric", "hellaswag"]
)


@settings(max_examples=60, deadline=None)
@given(
    metrics=st.dictionaries(
        names, st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1
    ),
    log=st.lists(
        st.sampled_from(
            [
                "piqa=1.0",
                "TRAIN_METRICS: step=1, secret_metric=2",
                "hello",
                "winogrande: 3",
                "loss 4",
                "Final metrics (x): secret_metric_lm-eval-345m=5",
            ]
        ),
        max_size=12,
    ),
    status=st.sampled_from(["ok", "failed"]),
)
def test_no_hidden_metric_name_survives_any_output(
    metrics: dict[str, float], log: list[str], status: str
) -> None:
    patterns = ["piqa_*", "winogrande", "secret_metric_*"]
    result = TestResult(
        status=status,
        results=[  # type: ignore[arg-type]
            SeedResult(
                setting="lm-eval-345m",
                seed=42,
                status=status,
                metrics=metrics if status == "ok" else {},  # type: ignore[arg-type]
                reason="x",
                log_tail="\n".join(log),
            ),
            SeedResult(setting="lm-eval-hidden", seed=42, status="ok", metrics={"arc_easy": 99.0}),
        ],
    )
    # a job whose log may be shown: its lines are scrubbed of hidden names too
    shown = LM.model_copy(update={"show_log": True})
    text = render_feedback(result, [shown, HIDDEN_LM], patterns)
    assert not re.search(r"piqa|winogrande|secret_metric|lm-eval-hidden", text), text

"""Run records, the SVG plot helper and the text table: validation, escaping, shapes."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from leaderboard import FinalRecord, MetricInfo, RunRecord, SeedRecord
from leaderboard._plots import Series, line_plot, nice_ticks
from leaderboard._records import decode_metrics, encode_metrics
from leaderboard._scoring import RunResult


def run(**changes: object) -> RunRecord:
    base: dict[str, object] = dict(
        run_id="r1",
        task_id="t",
        agent="openai:gpt-5",
        model="gpt-5",
        type="agent",
        method="gpt-5",
        profile="tiny",
        max_steps=20,
        max_tests=3,
        codebase_version="v1",
        dataset_source="offline",
        started_at=datetime(2026, 1, 1),
        status="finished",
        metric_specs=[MetricInfo(name="val_loss", setting="gpt-tiny", direction="lower", bound=0)],
    )
    base.update(changes)
    return RunRecord.model_validate(base)


def test_unknown_fields_and_bad_ids_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        run(surprise=1)
    with pytest.raises(ValidationError):
        run(run_id="../etc/passwd")
    with pytest.raises(ValidationError):
        run(type="wizard")
    with pytest.raises(ValidationError, match="duplicate test result"):
        t = SeedRecord(number=1, setting="gpt-tiny", seed=42, status="ok")
        run(tests=[t, t])
    with pytest.raises(ValidationError, match="same metric"):
        spec = MetricInfo(name="val_loss", setting="gpt-tiny", direction="lower")
        run(metric_specs=[spec, spec])


def test_naive_times_are_utc_and_nan_survives_json() -> None:
    r = run(
        tests=[
            SeedRecord(
                number=1,
                setting="gpt-tiny",
                seed=42,
                status="failed",
                metrics={"val_loss_gpt-tiny": math.nan, "x": math.inf},
            )
        ]
    )
    assert r.started_at.tzinfo is not None and r.started_at.utcoffset() == UTC.utcoffset(None)
    text = r.model_dump_json()
    assert '"NaN"' in text and '"Infinity"' in text
    back = RunRecord.model_validate_json(text)
    assert math.isnan(back.tests[0].metrics["val_loss_gpt-tiny"])
    assert back.tests[0].metrics["x"] == math.inf
    assert (
        decode_metrics(json.loads(json.dumps(encode_metrics({"a": -math.inf}))))["a"] == -math.inf
    )


def test_result_rows_follow_the_run_type() -> None:
    t1 = SeedRecord(
        number=1, setting="gpt-tiny", seed=42, status="ok", metrics={"val_loss_gpt-tiny": 3.0}
    )
    t2 = SeedRecord(
        number=2, setting="gpt-tiny", seed=42, status="ok", metrics={"val_loss_gpt-tiny": 2.0}
    )
    final = FinalRecord(
        test_number=2,
        status="ok",
        per_seed=[t2, t2.model_copy(update={"seed": 43, "metrics": {"val_loss_gpt-tiny": 2.2}})],
    )
    assert run(tests=[t1, t2], final=final).result_rows() == final.per_seed
    assert run(type="vanilla", tests=[t2, t1]).result_rows() == [t1]
    agent_without_final = run(tests=[t1, t2])
    assert agent_without_final.result_rows() == []
    assert agent_without_final.result_status() == "incomplete"
    res = RunResult.from_record(run(tests=[t1, t2], final=final))
    assert res.values == {"val_loss_gpt-tiny": [2.0, 2.2]}
    infra = run(final=FinalRecord(test_number=1, status="infra_error", reason="node lost"))
    assert infra.result_status() == "infra_error"


def test_svg_plot_escapes_names_and_breaks_at_gaps() -> None:
    svg = line_plot(
        [
            Series(
                "<script>alert(1)</script>",
                [(0, 1.0), (1, None), (2, 2.0), (3, 2.5)],
                emphasis=True,
            ),
            Series("baseline & co", [(0, 1.5), (3, math.nan)], dashed=True),
        ],
        title="Loss <b>",
        x_label="step",
        y_label="loss",
    )
    root = ET.fromstring(svg)  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    assert root.findall(f".//{ns}script") == []
    texts = "".join(t.text or "" for t in root.iter(f"{ns}text"))
    assert "<script>alert(1)" not in svg
    assert "<script>alert" in texts  # shown as text (shortened in the legend)
    assert "&lt;script&gt;" in svg and "baseline &amp; co" in svg
    assert len(root.findall(f".//{ns}polyline")) == 1  # (2,2.0)-(3,2.5); single points are dots
    assert len(root.findall(f".//{ns}circle")) == 2
    empty = line_plot([Series("x", [(0, None)])], title="t", x_label="x", y_label="y")
    assert "no data" in empty


def test_nice_ticks() -> None:
    assert nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(2.21, 2.29, 4) == pytest.approx([2.22, 2.24, 2.26, 2.28])
    assert nice_ticks(1, 1) == [1]
    assert nice_ticks(math.nan, 1) == []


def test_result_identity_is_the_code_seeds_data_and_label_not_the_run() -> None:
    def seed(s: int, val: float = 3.0) -> SeedRecord:
        return SeedRecord(
            number=1, setting="gpt-tiny", seed=s, status="ok", metrics={"val_loss_gpt-tiny": val}
        )

    def submitted(**changes: object) -> RunRecord:
        final = FinalRecord(test_number=1, status="ok", per_seed=[seed(42), seed(43)])
        return run(**{"final": final, "regions": {"get_lr": "return 1e-3"}, **changes})

    first = submitted().result_identity()
    assert first is not None
    # another run of the same method: new id, times, hardware and even metric values
    final = FinalRecord(test_number=1, status="ok", per_seed=[seed(43, 3.1), seed(42, 2.9)])
    assert (
        submitted(run_id="r2", started_at=datetime(2026, 2, 1), hardware={"cpus": 8})
        .model_copy(update={"final": final})
        .result_identity()
        == first
    )
    different = [
        submitted(regions={"get_lr": "return 2e-3"}),  # other code
        submitted(dataset_source="offline@other"),  # other data
        submitted(profile="small"),
        submitted(method="gpt-5-mini"),
        submitted(max_steps=10),  # another budget group
        submitted().model_copy(
            update={"final": FinalRecord(test_number=1, status="ok", per_seed=[seed(42)])}
        ),  # other seeds
    ]
    assert all(r.result_identity() not in (None, first) for r in different)
    assert run().result_identity() is None  # no result: nothing to be identical to

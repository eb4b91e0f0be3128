"""The sweep page's SVG: means with error bars placed on a linear or log axis, the default as
a reference line, every text escaped, and well-formed XML."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from leaderboard._plots import ErrorPoint, ErrorSeries, error_bar_plot

NS = "{http://www.w3.org/2000/svg}"


def _plot(log_x: bool, xs: list[float]) -> ET.Element:
    points = [
        ErrorPoint(x, 2.0 + i / 10, 1.9 + i / 10, 2.1 + i / 10, f"p{i}", i + 1)
        for i, x in enumerate(xs)
    ]
    svg = error_bar_plot(
        [ErrorSeries("<b>series</b>", points)],
        title="loss & <i>lr</i>",
        x_label="learning_rate",
        y_label="val_loss",
        x_ticks=[(x, str(x)) for x in xs],
        log_x=log_x,
        reference=ErrorPoint(0.0, 2.05, 2.0, 2.1, "default <x>", 0),
    )
    assert "<b>" not in svg and "<i>" not in svg and "&lt;b&gt;series" in svg
    return ET.fromstring(svg)


@pytest.mark.parametrize("log_x", [False, True])
def test_dots_sit_on_the_axis_scale(log_x: bool) -> None:
    xs = [1e-4, 1e-3, 1e-2]
    root = _plot(log_x, xs)
    circles = root.findall(f".//{NS}circle")
    assert [int(c.get("data-point", "")) for c in circles] == [1, 2, 3]
    cx = [float(c.get("cx", "")) for c in circles]
    cy = [float(c.get("cy", "")) for c in circles]
    if log_x:  # a decade is a decade
        assert cx[1] - cx[0] == pytest.approx(cx[2] - cx[1], abs=0.02)
    else:
        assert (cx[1] - cx[0]) / (cx[2] - cx[1]) == pytest.approx(
            (xs[1] - xs[0]) / (xs[2] - xs[1]), rel=1e-3
        )
    assert cy[0] > cy[1] > cy[2]  # higher means are drawn higher
    assert cy[0] - cy[1] == pytest.approx(cy[1] - cy[2], abs=0.02)
    ref = root.find(f".//{NS}line[@class='plot-ref']")
    assert ref is not None and float(ref.get("data-mean", "")) == 2.05
    assert (cy[0] + cy[1]) / 2 == pytest.approx(float(ref.get("y1", "")), abs=0.1)
    assert len(root.findall(f".//{NS}path[@class='plot-err']")) == 3
    labels = [t.text for t in root.iter(f"{NS}text")]
    assert ("learning_rate (log scale)" in labels) is log_x
    assert [t.text for t in root.iter(f"{NS}title")][1:] == ["default <x>", "p0", "p1", "p2"]


def test_nothing_to_plot_says_so() -> None:
    svg = error_bar_plot(
        [ErrorSeries("s", [ErrorPoint(1.0, math.nan)])],
        title="t",
        x_label="x",
        y_label="y",
        x_ticks=[(1.0, "1")],
    )
    assert "no data" in svg and ET.fromstring(svg) is not None

"""The bf16 peak table for MFU: the codebase's `GPU_PEAK_FLOPS` and docs/PERFORMANCE.md agree,
and a GPU is matched by its exact name (no family match hands one model another's peak)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests._fixtures.codebase import CODEBASE_DIR, codebase_module

DOCS = Path(__file__).resolve().parents[2] / "docs" / "PERFORMANCE.md"
ROW = re.compile(r"^\| `(NVIDIA [^`]+)` \| [^|]+ \| ([0-9.]+) \|", re.M)


def code_table() -> dict[str, float]:
    """GPU_PEAK_FLOPS as written in custom_pretrain.py (read as a literal: no torch needed)."""
    tree = ast.parse((CODEBASE_DIR / "custom_pretrain.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "GPU_PEAK_FLOPS" for t in node.targets
        ):
            table = ast.literal_eval(node.value)
            assert isinstance(table, dict)
            return table
    raise AssertionError("no GPU_PEAK_FLOPS in custom_pretrain.py")


def docs_table() -> dict[str, float]:
    return {name: float(tflops) * 1e12 for name, tflops in ROW.findall(DOCS.read_text())}


def test_docs_and_code_list_the_same_gpus_with_the_same_peaks() -> None:
    code, docs = code_table(), docs_table()
    assert len(docs) >= 10, "the docs table was not found"
    assert set(code) == set(docs)
    for name, flops in code.items():
        assert flops == pytest.approx(docs[name], rel=1e-9), name


def test_required_models_have_their_datasheet_dense_peaks() -> None:
    code = code_table()
    expected_tflops = {
        "NVIDIA H100 80GB HBM3": 989.4,
        "NVIDIA H100 PCIe": 756.5,
        "NVIDIA H100 NVL": 835.5,
        "NVIDIA H200": 989.4,
        "NVIDIA H200 NVL": 835.5,
        "NVIDIA A100-SXM4-80GB": 312,
        "NVIDIA A100 80GB PCIe": 312,
        "NVIDIA B200": 2250,
        "NVIDIA L40S": 362.05,
    }
    for name, tflops in expected_tflops.items():
        assert code[name] == pytest.approx(tflops * 1e12), name


def test_a_gpu_is_matched_by_its_exact_name_only() -> None:
    cp = codebase_module("custom_pretrain")
    assert cp.peak_flops_of("NVIDIA H200 NVL") == (835.5e12, None)
    assert cp.peak_flops_of("NVIDIA H200") == (989.4e12, None)
    assert cp.peak_flops_of("NVIDIA H100 PCIe") == (756.5e12, None)
    # near-names of listed models: variants, other memory sizes, export parts, case or spacing
    for near in (
        "NVIDIA H200 141GB",
        "NVIDIA H20",
        "NVIDIA H100",
        "NVIDIA H100 80GB HBM3e",
        "NVIDIA H800",
        "NVIDIA A100-SXM4",
        "NVIDIA A10G",
        "NVIDIA L40",
        "NVIDIA B200 NVL",
        "nvidia h200",
        "NVIDIA  H200",
        " NVIDIA H200",
        "NVIDIA GeForce RTX 4090",
    ):
        peak, why = cp.peak_flops_of(near)
        assert peak is None, near
        assert why is not None and repr(near) in why and "PERFORMANCE.md" in why


def test_no_peak_on_cpu() -> None:
    cp = codebase_module("custom_pretrain")
    assert cp.gpu_peak_flops("cpu") == (None, "CPU")

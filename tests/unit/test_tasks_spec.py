"""The two shipped tasks: valid folders, recipes that match the codebase, descriptions whose
numbers all come from the spec, and baselines whose formulas hold at their breakpoints."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import env
from env._regions import find_regions

ROOT = Path(__file__).resolve().parents[2]
CODEBASE = ROOT / "tasks" / "codebases" / "nanogpt"
TASKS = ["llm-pretrain-lr-schedule", "llm-pretrain-normalization"]
PROFILES = ["tiny", "small", "full"]


def _load_pb_config() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_pb_config_under_test", CODEBASE / "pb_config.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_tasks_are_listed_and_valid() -> None:
    assert set(TASKS) <= set(env.list_tasks())
    for task_id in TASKS:
        assert env.validate_task_dir(ROOT / "tasks" / task_id) == []


@pytest.mark.parametrize("task_id", TASKS)
@pytest.mark.parametrize("profile", PROFILES)
def test_recipe_matches_the_codebase_profile(task_id: str, profile: str) -> None:
    cfg = _load_pb_config().resolve_run_config({"PB_PROFILE": profile})
    recipe = env.load_task(task_id).recipe(profile)
    for key in (
        "max_iters",
        "batch_size",
        "grad_accum",
        "block_size",
        "tokens_per_iter",
        "warmup_iters",
        "learning_rate",
        "min_lr",
        "weight_decay",
        "grad_clip",
    ):
        assert recipe[key] == cfg[key], (
            f"{task_id} {profile}: recipe {key}={recipe[key]} != {cfg[key]}"
        )
    assert f"{cfg['n_layer']}L/{cfg['n_head']}H/{cfg['n_embd']}D" in str(recipe["model"])


@pytest.mark.parametrize("task_id", TASKS)
def test_jobs_follow_the_benchmark_layout(task_id: str) -> None:
    task = env.load_task(task_id)
    full = {j.label: j for j in task.jobs("full")}
    assert full["train-345m"].gpus == 2 and full["train-345m"].time_limit == "12:00:00"
    assert full["gpt-345m"].needs == ["train-345m"] and full["gpt-345m"].code == "original"
    assert full["lm-eval-345m"].hidden and full["lm-eval-345m"].needs == ["train-345m"]
    visible = [j.label for j in task.visible_jobs("tiny")]
    assert visible[1:] == ["train-tiny", "gpt-tiny"]
    assert task.metric_key("val_loss", "tiny") == "val_loss_gpt-tiny"  # MLS-Bench's keys
    assert task.primary_metric.name == "val_loss"
    patterns = task.hidden_metric_patterns("full")
    assert {"piqa_*", "winogrande_*", "*_lm-eval-345m"} <= set(patterns)
    assert task.budgets.max_steps == 20 and task.budgets.max_tests == 3


def test_agent_code_runs_only_where_the_task_needs_it() -> None:
    """The trust structure of the shipped tasks (docs/SECURITY.md): the LR task's agent code
    runs only in the schedule job; the normalisation task's in training and in logits workers;
    no job that reports metrics runs it; no job that runs it sees the evaluation data."""
    lr = env.load_task("llm-pretrain-lr-schedule")
    norm = env.load_task("llm-pretrain-normalization")
    for profile in lr.profiles:
        jobs = lr.jobs(profile)
        assert [j.label for j in jobs if j.code == "edited"] == ["schedule"]
        assert all(j.workers is None for j in jobs)
        train = next(j for j in jobs if j.label.startswith("train-"))
        assert train.env["PB_LR_SCHEDULE_JOB"] == "schedule" and train.needs == ["schedule"]
    for profile in norm.profiles:
        jobs = norm.jobs(profile)
        edited = [j for j in jobs if j.code == "edited"]
        assert [j.stage for j in edited] == ["preflight", "test"]
        for job in jobs:
            if job.metrics:
                assert job.code == "original" and job.workers is not None
                assert job.workers.count >= 2  # one for the main pass, fresh ones for probes
    for task in (lr, norm):
        assert set(task.data_regions) == {"config_overrides"}
        for profile in task.profiles:
            for job in task.jobs(profile):
                if job.code == "edited":
                    assert "eval_data" not in job.inputs and "hf_home" not in job.inputs


# Digits a description template may contain literally: "GPT-2", AdamW's betas, numbered
# lists, "from 0 to". Every other number must come from a slot filled from the spec, so the
# text can never contradict the behaviour.
_LITERAL_NUMBERS = {"2", "0.9", "0.95", "0", "1"}


@pytest.mark.parametrize("task_id", TASKS)
def test_description_template_has_no_hard_coded_numbers(task_id: str) -> None:
    template = env.load_task(task_id).description_template
    without_slots = re.sub(r"\{[^{}]*\}", "", template)
    numbers = set(re.findall(r"\d+(?:\.\d+)?", without_slots))
    assert numbers <= _LITERAL_NUMBERS, (
        f"hard-coded numbers in description.md: {numbers - _LITERAL_NUMBERS}"
    )


@pytest.mark.parametrize("task_id", TASKS)
@pytest.mark.parametrize("profile", PROFILES)
def test_rendered_description_agrees_with_the_spec(
    task_id: str, profile: str, tmp_path: Path
) -> None:
    task = env.load_task(task_id)
    ws = env.Workspace.create(task, tmp_path / "ws")
    text = env.render_observation(task, ws, profile, task.budgets, env.load_baselines(task))
    description = text.split("\n" + task.agent_path("custom_pretrain.py") + " [EDITABLE")[0]
    recipe = task.recipe(profile)
    assert f"{recipe['max_iters']} iterations" in description
    assert f"micro-batch {recipe['batch_size']} × {recipe['grad_accum']}" in description
    budget = text.split("## Your budget", 1)[1]  # generated from the spec, after the listing
    assert f"{task.budgets.max_steps} steps and {task.budgets.max_tests} tests" in budget
    for job in task.visible_jobs(profile):
        gpus = str(job.gpus) if job.gpus else "0 (CPU)"
        assert f"| {gpus} | {job.time_limit} |" in description
    for job in task.jobs(profile):
        if job.hidden:
            assert job.label not in text and job.script not in text
    for metric in task.metrics:
        if metric.hidden:
            assert metric.name not in text.lower()
    # the line ranges quoted are the ranges the workspace enforces
    ranges = ws.editable_ranges(task.agent_path("custom_pretrain.py"))
    quoted = {f"{a}–{b}" for a, b in ranges}
    found = set(re.findall(r"lines (\d+–\d+)", description))
    assert found and found <= quoted


# -- lr baselines: formulas at their breakpoints ----------------------------------------------

T, W, LR, MIN = 12030, 481, 3e-4, 3e-5


def _schedule(task_id: str, name: str):
    task = env.load_task(task_id)
    baseline = next(b for b in env.load_baselines(task) if b.name == name)
    if baseline.is_default:
        lines = (CODEBASE / "custom_pretrain.py").read_text().splitlines()
        span = next(s for s in find_regions(lines) if s.name == "get_lr")
        source = "\n".join(lines[span.body[0] - 1 : span.body[1]])
    else:
        source = baseline.regions["get_lr"]
    namespace: dict[str, object] = {"math": math}
    exec(compile(source, f"<baseline {name}>", "exec"), namespace)
    return namespace["get_lr"]


def _lr(fn, it: int) -> float:
    return fn(it, W, T, LR, MIN)


def test_cosine_default_breakpoints() -> None:
    fn = _schedule("llm-pretrain-lr-schedule", "cosine")
    assert _lr(fn, 0) == pytest.approx(LR / (W + 1))
    assert _lr(fn, W - 1) == pytest.approx(LR * W / (W + 1))
    assert _lr(fn, W) == pytest.approx(LR)
    mid = W + (T - W) // 2
    assert _lr(fn, mid) == pytest.approx(
        MIN + 0.5 * (1 + math.cos(math.pi * (mid - W) / (T - W))) * (LR - MIN)
    )
    assert _lr(fn, T) == pytest.approx(MIN)


@pytest.mark.parametrize(("name", "start_frac"), [("trapezoidal", 0.6), ("wsd", 0.8)])
def test_linear_cooldown_breakpoints(name: str, start_frac: float) -> None:
    fn = _schedule("llm-pretrain-lr-schedule", name)
    start = int(start_frac * T)
    assert _lr(fn, 0) == pytest.approx(LR / (W + 1))
    assert _lr(fn, W) == pytest.approx(LR)
    assert _lr(fn, start - 1) == pytest.approx(LR)
    assert _lr(fn, start) == pytest.approx(LR)
    half = start + (T - start) // 2
    assert _lr(fn, half) == pytest.approx(LR + (half - start) / (T - start) * (MIN - LR))
    assert _lr(fn, T - 1) == pytest.approx(MIN + (LR - MIN) / (T - start))
    assert _lr(fn, T) == pytest.approx(MIN)


def test_wsd_sqrt_breakpoints() -> None:
    fn = _schedule("llm-pretrain-lr-schedule", "wsd_sqrt")
    warmup = max(W, int(0.06 * T))
    assert warmup == 721
    assert _lr(fn, 0) == pytest.approx(LR / (warmup + 1))
    assert _lr(fn, W) < LR  # still warming up: the warmup is longer than the default's
    assert _lr(fn, warmup) == pytest.approx(LR)
    start = int(0.8 * T)
    assert _lr(fn, start) == pytest.approx(LR)
    t = 0.25
    it = start + int(t * (T - start))
    tt = (it - start) / (T - start)
    coeff = ((1 + 9 * tt) ** -0.5 - 10**-0.5) / (1 - 10**-0.5)
    assert _lr(fn, it) == pytest.approx(MIN + coeff * (LR - MIN))
    # front-loaded: a quarter of the way in, more than half of the drop is done
    assert _lr(fn, it) < MIN + 0.5 * (LR - MIN)
    assert _lr(fn, T) == pytest.approx(MIN)


@pytest.mark.parametrize("name", ["cosine", "trapezoidal", "wsd", "wsd_sqrt"])
def test_every_schedule_is_finite_and_non_negative(name: str) -> None:
    fn = _schedule("llm-pretrain-lr-schedule", name)
    values = [_lr(fn, it) for it in range(T + 1)]
    assert all(math.isfinite(v) and v >= 0 for v in values)
    assert max(values) == pytest.approx(LR)


# -- normalisation baselines: block structure on a tiny model ---------------------------------


def _module_with(task_id: str, name: str, tmp_path: Path) -> ModuleType:
    """The codebase file with the baseline's regions applied through the workspace."""
    pytest.importorskip("torch")
    task = env.load_task(task_id)
    baseline = next(b for b in env.load_baselines(task) if b.name == name)
    ws = env.Workspace.create(task, tmp_path / "ws")
    filename = task.agent_path("custom_pretrain.py")
    for region in sorted(baseline.regions, key=lambda r: -_span(ws, filename, r)[0]):
        first, last = _span(ws, filename, region)
        ws.replace(filename, first, last, baseline.regions[region])
    ws.check()
    code = tmp_path / "code"
    code.mkdir()
    helpers = sorted(p.stem for p in CODEBASE.glob("pb_*.py"))  # what custom_pretrain imports
    for helper in helpers:
        (code / f"{helper}.py").write_text((CODEBASE / f"{helper}.py").read_text())
    (code / "custom_pretrain.py").write_text(ws.edited_files()["custom_pretrain.py"])
    sys.path.insert(0, str(code))
    try:
        for mod in helpers:
            sys.modules.pop(mod, None)
        spec = importlib.util.spec_from_file_location(f"_cp_{name}", code / "custom_pretrain.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(code))
    return module


def _span(ws: env.Workspace, filename: str, region: str) -> tuple[int, int]:
    del filename  # the task has one editable file
    text_lines = ws.edited_files()["custom_pretrain.py"].splitlines()
    span = next(s for s in find_regions(text_lines) if s.name == region)
    return span.body


def _tiny(module: ModuleType):
    import torch

    torch.manual_seed(0)
    config = module.GPTConfig(
        n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=64, dropout=0.0, bias=False
    )
    block = module.Block(config).eval()
    x = torch.randn(2, 8, 16) * 3 + 1
    return torch, block, x


def _rms_normalised(torch, x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def test_layernorm_default_block_is_pre_ln(tmp_path: Path) -> None:
    m = _module_with("llm-pretrain-normalization", "layernorm", tmp_path)
    torch, block, x = _tiny(m)
    ln = torch.nn.functional.layer_norm
    h = x + block.attn(ln(x, (16,), eps=1e-5))
    expected = h + block.mlp(ln(h, (16,), eps=1e-5))
    torch.testing.assert_close(block(x), expected)


def test_rmsnorm_block_is_pre_ln_with_rms(tmp_path: Path) -> None:
    m = _module_with("llm-pretrain-normalization", "rmsnorm", tmp_path)
    torch, block, x = _tiny(m)
    out = block.ln_1(x)
    torch.testing.assert_close(out, _rms_normalised(torch, x))
    assert out.mean(-1).abs().max() > 1e-3  # no centring, unlike LayerNorm
    h = x + block.attn(_rms_normalised(torch, x))
    torch.testing.assert_close(block(x), h + block.mlp(_rms_normalised(torch, h)))


def test_rmsnorm_parallel_block_shares_one_norm(tmp_path: Path) -> None:
    m = _module_with("llm-pretrain-normalization", "rmsnorm_parallel", tmp_path)
    torch, block, x = _tiny(m)
    norms = [mod for mod in block.modules() if isinstance(mod, m.LayerNorm)]
    assert len(norms) == 1
    h = _rms_normalised(torch, x)
    torch.testing.assert_close(block(x), x + block.attn(h) + block.mlp(h))


def test_rmsnorm_post_block_normalises_the_residual_stream(tmp_path: Path) -> None:
    m = _module_with("llm-pretrain-normalization", "rmsnorm_post", tmp_path)
    torch, block, x = _tiny(m)
    h = _rms_normalised(torch, x + block.attn(x))
    out = block(x)
    torch.testing.assert_close(out, _rms_normalised(torch, h + block.mlp(h)))
    rms = out.pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-4, rtol=0)


def test_schedule_plot_is_drawn_from_each_baselines_code() -> None:
    from env import TaskSpecError
    from runner._components import plot_svg

    svg = plot_svg("llm-pretrain-lr-schedule", "lr-schedule", "full")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count("<polyline") == 4
    for name in ("cosine", "trapezoidal", "wsd", "wsd_sqrt"):
        assert f">{name}<" in svg
    with pytest.raises(TaskSpecError, match="has no plot"):
        plot_svg("llm-pretrain-normalization", None, "full")

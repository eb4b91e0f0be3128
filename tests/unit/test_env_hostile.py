"""A corpus of hostile edits (all refused, nothing changes) and of legitimate ones (accepted).

Each corpus runs on the synthetic codebase of tests/_fixtures/env.py and, when it exists, on
the real tasks/codebases/nanogpt/custom_pretrain.py with the real task specs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from env._errors import EditError
from env._spec import TaskSpec, _parse_spec, load_task
from env._workspace import Workspace
from tests._fixtures.env import NORM_TASK_CHANGES

F = "nanoGPT/custom_pretrain.py"
SIG = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):"
REAL_TASKS = Path(__file__).resolve().parents[2] / "tasks"


def _region(ws: Workspace, name: str) -> tuple[int, int]:
    names = [n for n in ws.region_texts()]
    return ws.editable_ranges(F)[names.index(name)]


def replace_region(name: str, content: str) -> Callable[[Workspace], str]:
    def run(ws: Workspace) -> str:
        start, end = _region(ws, name)
        return ws.replace(F, start, end, content)

    return run


def insert_in(name: str, content: str, where: str = "start") -> Callable[[Workspace], str]:
    def run(ws: Workspace) -> str:
        start, end = _region(ws, name)
        return ws.insert(F, start - 1 if where == "start" else end, content)

    return run


def lr(body: str) -> Callable[[Workspace], str]:
    """Replace get_lr by the standard signature plus ``body`` (indented function body)."""
    return replace_region("get_lr", f"{SIG}\n{body}")


def config(content: str) -> Callable[[Workspace], str]:
    return replace_region("config_overrides", content)


def raw(op: str, *args) -> Callable[[Workspace], str]:
    def run(ws: Workspace) -> str:
        s, e = _region(ws, "get_lr")
        resolved = [
            eval(a, {"S": s, "E": e}) if isinstance(a, str) and a[:1] in "SE0" else a for a in args
        ]
        return getattr(ws, op)(F, *resolved)

    return run


RMS_INIT = (
    "class LayerNorm(nn.Module):\n"
    "    def __init__(self, ndim, bias):\n"
    "        super().__init__()\n"
    "        self.weight = nn.Parameter(torch.ones(ndim))\n"
    "        self.eps = 1e-6\n\n"
    "    def forward(self, x):\n"
    "        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight\n"
)


def block(
    forward_body: str,
    header: str = "class Block(nn.Module):",
    init_sig: str = "self, config",
    fwd_sig: str = "self, x",
) -> Callable[[Workspace], str]:
    return replace_region(
        "block",
        f"{header}\n    def __init__({init_sig}):\n        super().__init__()\n"
        "        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)\n"
        "        self.mlp = MLP(config)\n\n"
        f"    def forward({fwd_sig}):\n{forward_body}",
    )


# (name, edit, expected fragment of the error)
HOSTILE_LR: list[tuple[str, Callable[[Workspace], str], str]] = [
    ("frozen first line", raw("replace", 1, 1, "x = 1"), "exceed the editable range"),
    (
        "span into END marker",
        raw("replace", "S", "E+1", SIG + "\n    return 1.0"),
        "exceed the editable range",
    ),
    ("START marker line", raw("replace", "S-1", "S", SIG), "exceed the editable range"),
    ("insert after END marker", raw("insert", "E+1", "x = 1"), "Cannot insert after line"),
    ("insert after line 0", raw("insert", 0, "import os"), "Cannot insert after line 0"),
    ("insert past the end", raw("insert", 10_000, "x = 1"), "Invalid line range"),
    (
        "exact forged END marker",
        insert_in("get_lr", "# ── EDITABLE REGION END: get_lr ──"),
        "region marker",
    ),
    (
        "ascii-dash forged marker",
        insert_in("get_lr", "# -- EDITABLE REGION START: evil --"),
        "region marker",
    ),
    (
        "lower-case spaced marker",
        insert_in("get_lr", "#   editable  region   end : get_lr"),
        "region marker",
    ),
    (
        "full-width marker",
        insert_in("get_lr", "# ＥＤＩＴＡＢＬＥ　ＲＥＧＩＯＮ ＥＮＤ: get_lr"),
        "region marker",
    ),
    (
        "cyrillic look-alike marker",
        insert_in("get_lr", "# ── ЕDITАBLE REGIОN END: get_lr ──"),
        "region marker",
    ),
    (
        "marker inside a string",
        lr('    s = """\n# ── EDITABLE REGION END: get_lr ──\n"""\n    return 1.0'),
        "region marker",
    ),
    (
        "zero-width split marker",
        insert_in("get_lr", "# EDITABLE\u200b REGION END: get_lr"),
        "invisible character",
    ),
    ("lone CR line break", lr("    return 1.0\rimport os"), "carriage return"),
    ("U+2028 line separator", lr("    x = 1\u2028    return 1.0"), "U+2028"),
    ("U+2029 paragraph separator", lr("    return 1.0 # \u2029"), "U+2029"),
    ("NEL", lr("    return 1.0\u0085"), "U+0085"),
    ("form feed", lr("\x0c    return 1.0"), "U+000C"),
    ("NUL byte", lr("    return 1.0 # \x00"), "U+0000"),
    ("escape character", lr("    return 1.0 # \x1b[2J"), "control character U+001B"),
    (
        "bidi override (Trojan Source)",
        lr("    access = 'user\u202e \u2066# admin\u2069 \u2066'\n    return 1.0"),
        "bidirectional",
    ),
    (
        "added defaulted param",
        replace_region("get_lr", SIG[:-2] + ", extra=1):\n    return 1.0"),
        "no added parameters (extra), even with defaults",
    ),
    (
        "*args",
        replace_region(
            "get_lr",
            "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr, *rest):\n    return 1.0",
        ),
        "no *args/**kwargs",
    ),
    (
        "keyword-only",
        replace_region(
            "get_lr",
            "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, *, min_lr):\n    return 1.0",
        ),
        "keyword-only",
    ),
    (
        "renamed param",
        replace_region(
            "get_lr",
            "def get_lr(step, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n    return 1.0",
        ),
        "signature must stay",
    ),
    (
        "decorated get_lr",
        replace_region("get_lr", "@staticmethod\n" + SIG + "\n    return 1.0"),
        "must not be decorated",
    ),
    (
        "async get_lr",
        replace_region("get_lr", "async " + SIG + "\n    return 1.0"),
        "must not be async",
    ),
    (
        "get_lr nested under if",
        replace_region("get_lr", "if True:\n    " + SIG + "\n        return 1.0"),
        "get_lr",
    ),
    (
        "lambda rebinding later",
        config("CONFIG_OVERRIDES = {}\nget_lr = lambda *a: 1.0"),
        "rebound by an assignment",
    ),
    (
        "import-as rebinding",
        config("CONFIG_OVERRIDES = {}\nfrom math import cos as get_lr"),
        "rebound by an import",
    ),
    (
        "class rebinding",
        config("CONFIG_OVERRIDES = {}\nclass get_lr:\n    pass"),
        "rebound by a class definition",
    ),
    ("del get_lr", config("CONFIG_OVERRIDES = {}\ndel get_lr"), "rebound by a deletion"),
    ("walrus rebinding", config("CONFIG_OVERRIDES = {'x': (get_lr := None)}"), "walrus"),
    ("get_lr removed", replace_region("get_lr", "def schedule(it):\n    return 1.0"), "is missing"),
    ("import os", lr("    import os\n    return 1.0"), "import of 'os' is not allowed"),
    (
        "import torch in lr task",
        lr("    import torch\n    return 1.0"),
        "import of 'torch' is not allowed",
    ),
    ("from math import star", config("from math import *\nCONFIG_OVERRIDES = {}"), "import *"),
    (
        "relative import",
        config("from . import pb_config\nCONFIG_OVERRIDES = {}"),
        "relative imports",
    ),
    ("__import__", lr("    return __import__('os').getpid()"), "'__import__'"),
    ("eval", lr("    return eval('1.0')"), "built-in 'eval'"),
    ("exec", lr("    exec('x = 1')\n    return 1.0"), "built-in 'exec'"),
    ("open", lr("    open('/tmp/x', 'w').write('1')\n    return 1.0"), "built-in 'open'"),
    ("getattr string trick", lr("    return getattr(math, 'co' + 's')(0)"), "built-in 'getattr'"),
    ("alias of a builtin", lr("    f = vars\n    return 1.0"), "built-in 'vars'"),
    ("breakpoint", lr("    breakpoint()\n    return 1.0"), "built-in 'breakpoint'"),
    ("frozen os import", lr("    return float(os.getpid())"), "module 'os'"),
    (
        "monkeypatch math.cos",
        config("CONFIG_OVERRIDES = {}\nmath.cos = lambda x: 0.0"),
        "monkeypatch the imported module 'math'",
    ),
    ("augassign module attribute", config("CONFIG_OVERRIDES = {}\nmath.pi += 1"), "monkeypatch"),
    (
        "dunder walk to subclasses",
        lr("    x = ().__class__.__bases__[0].__subclasses__()\n    return 1.0"),
        "'__class__'",
    ),
    (
        "frame globals via traceback",
        lr(
            "    try:\n        1 / 0\n    except Exception as e:\n        g = e.__traceback__.tb_frame.f_globals\n    return 1.0"
        ),
        "__traceback__",
    ),
    (
        "format string dunder",
        lr("    s = '{0.__class__}'.format(1)\n    return 1.0"),
        "format string",
    ),
    ("global statement", lr("    global CONFIG_OVERRIDES\n    return 1.0"), "'global' statements"),
    (
        "rebind frozen function",
        config("CONFIG_OVERRIDES = {}\nget_batch = None"),
        "module-level name of the frozen code",
    ),
    (
        "call frozen helper",
        lr("    get_batch('val')\n    return 1.0"),
        "function of the frozen training code",
    ),
    (
        "rebind builtin",
        config("CONFIG_OVERRIDES = {}\nprint = None"),
        "rebinds the built-in 'print'",
    ),
    ("non-ASCII identifier", lr("    ｒａｔｅ = learning_rate\n    return rate"), "not ASCII"),
    ("cyrillic identifier", lr("    а = 1.0\n    return а"), "not ASCII"),
    ("syntax error", lr("    return (1.0"), "syntax error"),
]

HOSTILE_NORM: list[tuple[str, Callable[[Workspace], str], str]] = [
    (
        "LayerNorm extra init param",
        replace_region("layernorm", RMS_INIT.replace("ndim, bias)", "ndim, bias, eps=1e-5)")),
        "LayerNorm.__init__",
    ),
    (
        "LayerNorm not a Module",
        replace_region("layernorm", RMS_INIT.replace("(nn.Module)", "")),
        "must keep its bases",
    ),
    (
        "Block forward extra param",
        block("        return x\n", fwd_sig="self, x, mask=None"),
        "Block.forward",
    ),
    ("Block init renamed", block("        return x\n", init_sig="self, cfg"), "Block.__init__"),
    (
        "Block metaclass",
        block("        return x\n", header="class Block(nn.Module, metaclass=type):"),
        "metaclass",
    ),
    (
        "LayerNorm rebound in block region",
        replace_region(
            "block",
            "LayerNorm = nn.LayerNorm\n"
            + "class Block(nn.Module):\n    def __init__(self, config):\n        super().__init__()\n\n    def forward(self, x):\n        return x",
        ),
        "rebound by an assignment",
    ),
    (
        "Block.forward reassigned in class",
        block("        return x\n    forward = None\n"),
        "Block.forward",
    ),
    (
        "torch.manual_seed",
        block("        torch.manual_seed(0)\n        return x\n"),
        "torch.manual_seed",
    ),
    ("torch.save", block("        torch.save(x, 'x.pt')\n        return x\n"), "torch.save"),
    ("torch.hub", block("        m = torch.hub.load('a', 'b')\n        return x\n"), "torch.hub"),
    (
        "cpp extension import",
        block("        from torch.utils.cpp_extension import load_inline\n        return x\n"),
        "torch.utils.cpp_extension",
    ),
    (
        "torch.distributed",
        block("        import torch.distributed as dist\n        return x\n"),
        "torch.distributed",
    ),
    (
        "torch private",
        block("        torch._C._set_grad_enabled(False)\n        return x\n"),
        "torch._C",
    ),
    (
        "torch.set_ global state",
        block("        torch.set_default_dtype(torch.float64)\n        return x\n"),
        "torch.set_default_dtype",
    ),
    (
        "backends assignment",
        block("        torch.backends.cuda.matmul.allow_tf32 = False\n        return x\n"),
        "torch.backends",
    ),
    (
        "monkeypatch F.cross_entropy",
        block("        F.cross_entropy = lambda *a, **k: 0\n        return x\n"),
        "monkeypatch the imported module 'F'",
    ),
    (
        "monkeypatch nn.Module.forward",
        block("        nn.Module.forward = None\n        return x\n"),
        "monkeypatch the imported module 'nn'",
    ),
    (
        "patch frozen class",
        block("        MLP.forward = lambda self, x: x\n        return x\n"),
        "belongs to the frozen code",
    ),
    (
        "frozen import outside the allow-list",
        block("        time.sleep(3600)\n        return x\n"),
        "comes from 'time'",
    ),
    (
        "compile in region",
        block("        f = torch.compile(self.mlp)\n        return x\n"),
        "torch.compile",
    ),
]


def _mini(make_env_task, tmp_path: Path, changes: dict | None = None) -> Workspace:
    task = load_task(make_env_task(changes or {}, description="# {file}\n"))
    return Workspace.create(task, tmp_path / "ws")


def _real(task_id: str, tmp_path: Path) -> Workspace:
    if not (REAL_TASKS / "codebases" / "nanogpt" / "custom_pretrain.py").is_file():
        pytest.skip("the real codebase is not written yet")
    spec, problems = _parse_spec(REAL_TASKS / task_id)
    assert isinstance(spec, TaskSpec), problems
    return Workspace.create(spec, tmp_path / "ws")


def _assert_refused(ws: Workspace, edit: Callable[[Workspace], str], expected: str) -> None:
    before = ws.state().model_dump_json()
    files = {p: (ws.root / p).read_text() for p in ws.edited_files()}
    with pytest.raises(EditError) as err:
        edit(ws)
    text = str(err.value)
    assert text.startswith("ERROR: "), text
    assert expected in text, text
    assert ws.state().model_dump_json() == before
    assert {p: (ws.root / p).read_text() for p in ws.edited_files()} == files
    ws.check()


@pytest.mark.parametrize("codebase", ["mini", "real"])
@pytest.mark.parametrize("case", HOSTILE_LR, ids=[c[0] for c in HOSTILE_LR])
def test_hostile_lr_edit_is_refused(case, codebase, make_env_task, tmp_path: Path) -> None:
    name, edit, expected = case
    if codebase == "real" and name == "call frozen helper":
        edit = lr("    checked_lr(0, {})\n    return 1.0")
    if codebase == "real" and name == "rebind frozen function":
        edit = config("CONFIG_OVERRIDES = {}\nchecked_lr = None")
    ws = (
        _mini(make_env_task, tmp_path)
        if codebase == "mini"
        else _real("llm-pretrain-lr-schedule", tmp_path)
    )
    _assert_refused(ws, edit, expected)


@pytest.mark.parametrize("codebase", ["mini", "real"])
@pytest.mark.parametrize("case", HOSTILE_NORM, ids=[c[0] for c in HOSTILE_NORM])
def test_hostile_norm_edit_is_refused(case, codebase, make_env_task, tmp_path: Path) -> None:
    _, edit, expected = case
    ws = (
        _mini(make_env_task, tmp_path, NORM_TASK_CHANGES)
        if codebase == "mini"
        else _real("llm-pretrain-normalization", tmp_path)
    )
    _assert_refused(ws, edit, expected)


def test_corpus_is_large_enough() -> None:
    assert len(HOSTILE_LR) + len(HOSTILE_NORM) >= 30


WSD = (
    SIG
    + '''
    """Warmup-stable-decay: linear warmup, constant peak, linear decay over the last 20 %."""
    import math  # a local import of an allowed module

    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    decay_start = int(0.8 * lr_decay_iters)
    if it < decay_start:
        return learning_rate
    progress = min(1.0, (it - decay_start) / max(1, lr_decay_iters - decay_start))
    lr = min_lr + (learning_rate - min_lr) * (1.0 - progress)  # a local called lr is fine
    return max(min_lr, lr) * math.cos(0.0)'''
)

HELPER_THEN_LR = (
    '''def _sqrt_coeff(t):
    """[(1+9t)^-1/2 - 10^-1/2] / (1 - 10^-1/2): from 1 to 0 (sin² in a docstring is fine)."""
    return ((1 + 9 * t) ** -0.5 - 10 ** -0.5) / (1 - 10 ** -0.5)


'''
    + SIG
    + """
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    t = min(1.0, max(0.0, (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)))
    values = [_sqrt_coeff(x / 10) for x in range(11)]  # a comprehension
    return min_lr + (learning_rate - min_lr) * _sqrt_coeff(t) + 0 * sum(values)"""
)

RMS_PARALLEL = '''class Block(nn.Module):
    """Parallel block (GPT-J): x + attn(ln(x)) + mlp(ln(x))."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        h = self.ln_1(x)
        out = x + self.mlp(h) * self.scale
        return F.dropout(out, p=0.0, training=self.training)'''

ALLOWED_LR = [
    ("wsd schedule", replace_region("get_lr", WSD)),
    ("helper function before get_lr", replace_region("get_lr", HELPER_THEN_LR)),
    (
        "config overrides",
        config("CONFIG_OVERRIDES = {\n    'learning_rate': 6e-4,\n    'warmup_iters': 100,\n}"),
    ),
    (
        "crlf content is normalised",
        replace_region("get_lr", SIG + "\r\n    return learning_rate\r\n"),
    ),
    (
        "comment about regions",
        lr("    # this region of the schedule is the warmup\n    return learning_rate"),
    ),
    ("insert at region end", insert_in("get_lr", "    # trailing comment", where="end")),
    (
        "region ending three blocks deep",
        lr(
            "    if it < warmup_iters:\n        return learning_rate\n    else:\n"
            "        for _ in range(1):\n            if it >= 0:\n"
            "                return min_lr  # ends three blocks deep\n    return min_lr"
        ),
    ),
    (
        "multi-line string inside the region",
        lr('    """A docstring\n    over lines."""\n    return min_lr'),
    ),
]

ALLOWED_NORM = [
    ("rmsnorm", replace_region("layernorm", RMS_INIT)),
    ("parallel block", replace_region("block", RMS_PARALLEL)),
    ("post-ln block", block("        x = self.ln_1(x + self.mlp(x))\n        return x\n")),
]


@pytest.mark.parametrize("codebase", ["mini", "real"])
@pytest.mark.parametrize("case", ALLOWED_LR, ids=[c[0] for c in ALLOWED_LR])
def test_allowed_lr_edit_is_accepted(case, codebase, make_env_task, tmp_path: Path) -> None:
    ws = (
        _mini(make_env_task, tmp_path)
        if codebase == "mini"
        else _real("llm-pretrain-lr-schedule", tmp_path)
    )
    out = case[1](ws)
    assert out.startswith("OK: "), out
    ws.check()
    assert "\r" not in ws.text(F)


@pytest.mark.parametrize("codebase", ["mini", "real"])
@pytest.mark.parametrize("case", ALLOWED_NORM, ids=[c[0] for c in ALLOWED_NORM])
def test_allowed_norm_edit_is_accepted(case, codebase, make_env_task, tmp_path: Path) -> None:
    ws = (
        _mini(make_env_task, tmp_path, NORM_TASK_CHANGES)
        if codebase == "mini"
        else _real("llm-pretrain-normalization", tmp_path)
    )
    out = case[1](ws)
    assert out.startswith("OK: "), out
    ws.check()


def _baseline_cases() -> list[tuple[str, Path]]:
    root = REAL_TASKS.parent / "baselines"
    return [
        (task, path)
        for task in ("llm-pretrain-lr-schedule", "llm-pretrain-normalization")
        for path in sorted((root / task).glob("*.py"))
    ]


@pytest.mark.parametrize("task_id,path", _baseline_cases(), ids=lambda v: getattr(v, "stem", v))
def test_real_baselines_pass_every_check(task_id: str, path: Path, tmp_path: Path) -> None:
    """The shipped baselines are legitimate edits: the policy must accept every one."""
    from env._regions import find_regions

    ws = _real(task_id, tmp_path)
    lines = path.read_text(encoding="utf-8").split("\n")
    spans = find_regions(lines)
    for span in sorted(spans, key=lambda s: -s.start_marker):  # bottom-most region first
        body = "\n".join(lines[span.start_marker : span.end_marker - 1])
        start, end = _region(ws, span.name)
        out = ws.replace(F, start, end, body) if end >= start else ws.insert(F, start - 1, body)
        assert out.startswith("OK: "), out
    ws.check()


HOSTILE_ALIASING = [
    (
        "module alias then patch",
        block("        m = torch.nn\n        m.Linear = None\n        return x\n"),
        "monkeypatching",
    ),
    (
        "class alias then patch",
        block("        cls = nn.Linear\n        cls.forward = None\n        return x\n"),
        "monkeypatching",
    ),
    (
        "type() then patch",
        block("        cls = type(self.mlp)\n        cls.forward = None\n        return x\n"),
        "monkeypatching",
    ),
    (
        "computed root patch",
        block("        type(self.mlp).forward = None\n        return x\n"),
        "named object of your own",
    ),
    (
        "tuple laundering",
        block(
            "        for c in (MLP, nn.Linear):\n            c.forward = None\n        return x\n"
        ),
        "monkeypatching",
    ),
    (
        "module-level alias used in method",
        replace_region(
            "block",
            "Lin = nn.Linear\n\nclass Block(nn.Module):\n    def __init__(self, config):\n        super().__init__()\n        Lin.forward = None\n\n    def forward(self, x):\n        return x",
        ),
        "monkeypatching",
    ),
    (
        "walrus laundering",
        block("        (c := MLP).forward = None\n        return x\n"),
        "named object of your own",
    ),
    (
        "frozen list mutation via alias",
        block("        d = F\n        d.gelu = None\n        return x\n"),
        "monkeypatching",
    ),
]


@pytest.mark.parametrize("case", HOSTILE_ALIASING, ids=[c[0] for c in HOSTILE_ALIASING])
def test_aliasing_monkeypatch_is_refused(case, make_env_task, tmp_path: Path) -> None:
    _, edit, expected = case
    _assert_refused(_mini(make_env_task, tmp_path, NORM_TASK_CHANGES), edit, expected)


def test_string_spanning_two_regions_cannot_swallow_frozen_code(
    make_env_task, tmp_path: Path
) -> None:
    """Byte-identical frozen text is not enough: a string opened in one region and closed in
    the next would turn the frozen MLP class between them into data (and the file parses)."""
    import ast

    ws = _mini(make_env_task, tmp_path, NORM_TASK_CHANGES)
    # Harmless on its own: a string holding three double quotes, and a comment.
    assert insert_in("block", "X = '''\"\"\"'''\nY = 1  # '''")(ws).startswith("OK: ")
    s, e = _region(ws, "layernorm")
    lines = ws.text(F).split("\n")
    candidate = "\n".join([*lines[: s - 1], *(RMS_INIT + '_ = """').split("\n"), *lines[e:]])
    swallowed = ast.parse(candidate)  # it parses: MLP is now part of a string
    assert "MLP" not in {getattr(n, "name", None) for n in swallowed.body}
    _assert_refused(ws, replace_region("layernorm", RMS_INIT + '_ = """'), "swallow frozen lines")


def test_bracket_nesting_of_frozen_code_is_compared() -> None:
    from env._checks import _frozen_token_stream

    original = "a = 1\nb,\nc = 3\n"
    wrapped = "a = [\nb,\nc]\n"  # frozen line 2 is byte-identical, but inside brackets here
    before, _, crossing1 = _frozen_token_stream(original, {1, 3})
    after, _, crossing2 = _frozen_token_stream(wrapped, {1, 3})
    assert crossing1 is None and crossing2 is None and before != after


@pytest.mark.parametrize(
    "content,expected",
    [
        (SIG + "\n    return " + "1+" * 60_000 + "1", "too deeply nested"),
        (SIG + "\n    x = " + "(" * 300 + ")" * 300 + "\n    return 1.0", "syntax error"),
        ("# x\n" * 120_000, "at most"),
    ],
    ids=["deep expression", "deep parentheses", "huge content"],
)
def test_pathological_content_is_refused(
    content: str, expected: str, make_env_task, tmp_path
) -> None:
    _assert_refused(_mini(make_env_task, tmp_path), replace_region("get_lr", content), expected)

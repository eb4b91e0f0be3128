"""The code policy and the invariants as pure functions on source text."""

from __future__ import annotations

import ast

import pytest

from env._invariants import check_invariants, scope_bindings
from env._policy import check_policy
from env._spec import ClassInvariant, CodePolicy, SignatureInvariant

FROZEN = "import math\nimport torch\nimport torch.nn as nn\nfrom torch.nn import functional as F\n\n\ndef frozen_helper():\n    return 1\n\n\nLIMIT = 3\n"


def _check(
    region: str, policy: CodePolicy | None = None, region_names: set[str] | None = None
) -> list[str]:
    """Policy messages for ``region`` appended (as the open lines) after the frozen prelude."""
    source = FROZEN + region
    first = FROZEN.count("\n") + 1
    open_lines = set(range(first, source.count("\n") + 2))
    tree = ast.parse(source)
    return [
        v.message
        for v in check_policy(tree, source, open_lines, policy or CodePolicy(), region_names)
    ]


def test_clean_code_passes() -> None:
    code = (
        "class Norm(nn.Module):\n"
        "    def __init__(self, ndim, bias):\n"
        "        super().__init__()\n"
        "        self.weight = nn.Parameter(torch.ones(ndim))\n"
        "    def forward(self, input):\n"  # a parameter called input shadows the builtin
        "        open = input * 2\n"  # and so does a local called open
        "        return F.rms_norm(open, (input.size(-1),), self.weight) + LIMIT\n"
        "import torch.nn.init\n"
        "import math\n"  # the very module the frozen code imported: not a rebinding
    )
    assert _check(code) == []


def test_class_scope_does_not_hide_builtins_from_methods() -> None:
    code = "class A:\n    open = 1\n    def f(self):\n        return open('/etc/passwd')\n"
    assert any("built-in 'open'" in m for m in _check(code))


def test_comprehension_variables_are_local() -> None:
    assert _check("VALUES = [input for input in range(3)]\n") == []
    assert any("'input'" in m for m in _check("VALUES = [input for x in range(3)]\n"))


def test_allow_list_and_submodules() -> None:
    strict = CodePolicy(allowed_imports=["torch"], allow_submodules=False)
    assert any("import of 'torch.nn'" in m for m in _check("import torch.nn\n", strict))
    assert _check("import torch.nn\n") == []
    assert any(
        "import of 'math'" in m
        for m in _check("import math as m2\n", CodePolicy(allowed_imports=[]))
    )


def test_configured_forbidden_names_and_calls() -> None:
    policy = CodePolicy(forbidden_names=["print"], forbidden_calls=["torch.randn"])
    messages = _check("def g(x):\n    print(x)\n    return torch.randn(3)\n", policy)
    assert any("'print'" in m for m in messages) and any("torch.randn" in m for m in messages)


def test_region_names_may_be_redefined_but_frozen_ones_not() -> None:
    assert _check("CONFIG = {}\n", region_names={"CONFIG"}) == []
    assert any("frozen code" in m for m in _check("LIMIT = 4\n"))
    assert any("frozen_helper" in m for m in _check("x = frozen_helper()\n"))
    assert any("rebinds 'F'" in m for m in _check("import math as F\n"))


@pytest.mark.parametrize(
    "code",
    [
        "x = torch.load('ckpt.pt')\n",
        "from torch import load\n",
        "from torch import save as s\n",
        "import torch.hub\n",
        "torch.cuda.manual_seed_all(0)\n",
        "g = torch.random.get_rng_state()\n",
        "torch.backends.cudnn.benchmark = True\n",
        "torch.nn.modules.module.register_module_forward_hook(lambda *a: None)\n",
        "x = torch.tensor([1.0]); x.numpy().tofile('/tmp/x')\n",
        "def f():\n    nonlocal_x = 1\n    def g():\n        nonlocal nonlocal_x\n",
        "async def f():\n    global LIMIT\n",
        "s = '{0.__globals__}'\n",
        "f = lambda: __builtins__\n",
        "x = math.__dict__\n",
        "def f(e):\n    return e.tb_frame.f_back\n",
    ],
)
def test_denied_constructs(code: str) -> None:
    assert _check(code), code


def test_scope_bindings_cover_every_binding_form() -> None:
    code = (
        "import a.b\nfrom c import d as e\nf = g = 1\nh: int = 2\ni += 1\ndel j\n"
        "for k, (l, *m) in x: pass\nwith y as n: pass\n"
        "try: pass\nexcept E as o: pass\n"
        "match v:\n    case [p, *q]: pass\n    case {'k': r, **s}: pass\n"
        "def t(): pass\nclass u: pass\nprint(w := 1)\nzz = [yy := 2 for _ in x]\n"
        "if c:\n    aa = 1\nwhile c:\n    bb = 1\n"
    )
    names = {b.name for b in scope_bindings(ast.parse(code).body)}
    assert names == set("aefghijklmnopqrstuw") | {"yy", "zz", "aa", "bb"}


SIG = SignatureInvariant(
    kind="signature",
    file="x.py",
    function="get_lr",
    params=["it", "warmup_iters", "lr_decay_iters", "learning_rate", "min_lr"],
)
GOOD = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n    return 1.0\n"


@pytest.mark.parametrize(
    "code,fragment",
    [
        (GOOD, None),
        (GOOD.replace("min_lr):", "min_lr=0.0):"), None),  # a default on a kept parameter is fine
        (GOOD.replace("(it,", "(it, /,"), "positional-only"),
        (GOOD.replace("min_lr)", "min_lr, **kw)"), "no *args/**kwargs"),
        (
            GOOD
            + "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n    return 2.0\n",
            "rebound",
        ),
        (GOOD + "for get_lr in []: pass\n", "for-loop target"),
        (GOOD + "with x as get_lr: pass\n", "with-statement target"),
        (GOOD + "try:\n    pass\nexcept E as get_lr:\n    pass\n", "except clause"),
        (GOOD + "def f():\n    global get_lr\n    get_lr = 1\n", "global get_lr"),
        ("class C:\n" + "\n".join("    " + ln for ln in GOOD.splitlines()) + "\n", "is missing"),
    ],
)
def test_signature_invariant(code: str, fragment: str | None) -> None:
    messages = [v.message for v in check_invariants(ast.parse(code), [SIG])]
    if fragment is None:
        assert messages == []
    else:
        assert any(fragment in m for m in messages), messages


def test_class_invariant_defaults_to_original_bases() -> None:
    inv = ClassInvariant(
        kind="class", file="x.py", name="N", methods={"__init__": ["self", "ndim"]}
    )
    original = ast.parse("class N(nn.Module):\n    def __init__(self, ndim):\n        pass\n")
    good = ast.parse("class N(nn.Module):\n    def __init__(self, ndim):\n        self.n = ndim\n")
    assert check_invariants(good, [inv], original) == []
    bad = ast.parse("class N(object):\n    def __init__(self, ndim):\n        pass\n")
    assert "must keep its bases (nn.Module)" in check_invariants(bad, [inv], original)[0].message
    decorated = ast.parse(
        "@dataclass\nclass N(nn.Module):\n    def __init__(self, ndim):\n        pass\n"
    )
    assert any("decorated" in v.message for v in check_invariants(decorated, [inv], original))
    static = ast.parse(
        "class N(nn.Module):\n    @staticmethod\n    def __init__(self, ndim):\n        pass\n"
    )
    assert any("decorated" in v.message for v in check_invariants(static, [inv], original))

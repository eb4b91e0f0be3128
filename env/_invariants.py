"""Task invariants, checked on the AST of the whole file after every edit.

A signature invariant keeps a function callable exactly as the frozen code calls it: the same
name, the same parameters in the same order and nothing more, a plain (not async, undecorated)
``def`` directly in the module body, bound exactly once at module scope — so it cannot be
replaced later in the file by an assignment, a lambda, an import, a class, or deleted.
A class invariant keeps a class's bases (by default those of the original file) and the
parameter lists of the named methods.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from typing import Annotated, Literal, NamedTuple

from pydantic import Field

from env._models import NAME as _NAME
from env._models import RelPath
from env._models import SpecModel as _Model

__all__ = [
    "Binding",
    "ClassInvariant",
    "Invariant",
    "SignatureInvariant",
    "Violation",
    "bound_names",
    "check_invariants",
    "scope_bindings",
]


class Violation(NamedTuple):
    """A broken rule: the 1-based line (0 when it concerns the whole file) and what is wrong."""

    line: int
    message: str
    field: str = ""  # the field of an invariant it breaks ("params", "methods.forward"), if any


class Binding(NamedTuple):
    """A name bound in a scope, by which kind of statement, at which node."""

    name: str
    kind: str
    node: ast.AST


class SignatureInvariant(_Model):
    """A module-level function whose name and parameter list must stay exactly as given."""

    kind: Literal["signature"]
    file: RelPath
    function: str = Field(pattern=_NAME)
    params: list[Annotated[str, Field(pattern=_NAME)]]


class ClassInvariant(_Model):
    """A module-level class that must keep its bases and the signatures of some methods.

    ``bases`` defaults to the bases the class has in the original codebase file.
    """

    kind: Literal["class"]
    file: RelPath
    name: str = Field(pattern=_NAME)
    bases: list[str] | None = None
    methods: dict[str, list[Annotated[str, Field(pattern=_NAME)]]] = Field(default_factory=dict)


Invariant = Annotated[SignatureInvariant | ClassInvariant, Field(discriminator="kind")]


def _expression_bindings(node: ast.AST) -> Iterator[Binding]:
    """Walrus targets inside an expression; they bind in the enclosing scope, even from a
    comprehension (but not from a lambda)."""
    stack: list[ast.AST] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Lambda):
            stack.extend(d for d in [*current.args.defaults, *current.args.kw_defaults] if d)
            continue
        if isinstance(current, ast.NamedExpr) and isinstance(current.target, ast.Name):
            yield Binding(current.target.id, "walrus assignment", current)
        stack.extend(c for c in ast.iter_child_nodes(current) if c is not None)


def scope_bindings(body: Sequence[ast.stmt]) -> Iterator[Binding]:
    """Every name bound in the scope whose statements are ``body`` (module or class body).

    Descends into compound statements (if/for/while/with/try/match) but not into function or
    class bodies, which are scopes of their own.
    """
    for stmt in body:
        yield from _statement_bindings(stmt)


def _statement_bindings(stmt: ast.stmt) -> Iterator[Binding]:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        kind = "class definition" if isinstance(stmt, ast.ClassDef) else "function definition"
        yield Binding(stmt.name, kind, stmt)
        for expr in stmt.decorator_list:
            yield from _expression_bindings(expr)
        return
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        for alias in stmt.names:
            if alias.name != "*":
                bound = alias.asname or alias.name.split(".")[0]
                yield Binding(bound, "import", stmt)
        return
    if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
        targets = stmt.targets if isinstance(stmt, ast.Assign | ast.Delete) else [stmt.target]
        kind = "deletion" if isinstance(stmt, ast.Delete) else "assignment"
        for target in targets:
            for name in bound_names(target):
                yield Binding(name.id, kind, stmt)
        value = getattr(stmt, "value", None)
        if value is not None:
            yield from _expression_bindings(value)
        return
    if isinstance(stmt, ast.For | ast.AsyncFor):
        for name in bound_names(stmt.target):
            yield Binding(name.id, "for-loop target", stmt)
    if isinstance(stmt, ast.With | ast.AsyncWith):
        for item in stmt.items:
            yield from _expression_bindings(item.context_expr)
            if item.optional_vars is not None:
                for name in bound_names(item.optional_vars):
                    yield Binding(name.id, "with-statement target", stmt)
    if isinstance(stmt, ast.Try | ast.TryStar):
        for handler in stmt.handlers:
            if handler.name:
                yield Binding(handler.name, "except clause", handler)
            yield from scope_bindings(handler.body)
    if isinstance(stmt, ast.Match):
        for case in stmt.cases:
            for pattern in ast.walk(case.pattern):
                captured = getattr(pattern, "name", None) or getattr(pattern, "rest", None)
                if isinstance(captured, str):
                    yield Binding(captured, "match capture", pattern)
            yield from scope_bindings(case.body)
    for child in ast.iter_child_nodes(stmt):
        if isinstance(child, ast.expr):
            yield from _expression_bindings(child)
    for attr in ("body", "orelse", "finalbody"):
        block = getattr(stmt, attr, None)
        if isinstance(block, list):
            yield from scope_bindings(block)


def bound_names(target: ast.AST) -> list[ast.Name]:
    """Names an assignment target binds: ``a``, ``a, (b, *c)`` — not ``a.b`` or ``a[i]``."""
    if isinstance(target, ast.Name):
        return [target]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for elt in target.elts for n in bound_names(elt)]
    if isinstance(target, ast.Starred):
        return bound_names(target.value)
    return []


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _globals_naming(tree: ast.Module, name: str) -> list[ast.AST]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Global | ast.Nonlocal) and name in node.names
    ]


def _params(args: ast.arguments) -> list[str]:
    return [a.arg for a in args.posonlyargs + args.args]


def _signature_problems(
    qualname: str, func: ast.FunctionDef | ast.AsyncFunctionDef, params: list[str], field: str
) -> list[Violation]:
    """How `func` departs from a plain ``def qualname(params)`` (`field`: the invariant's field
    that names the parameters)."""
    expected = f"{qualname}({', '.join(params)})"
    found = f"{qualname}({ast.unparse(func.args)})"
    line = func.lineno
    problems = []
    if isinstance(func, ast.AsyncFunctionDef):
        problems.append(Violation(line, f"{qualname} must not be async; keep {expected}"))
    if func.decorator_list:
        problems.append(
            Violation(
                func.decorator_list[0].lineno,
                f"{qualname} must not be decorated (a decorator can replace the function); "
                f"keep a plain def {expected}",
            )
        )
    a = func.args
    if _params(a) != params or a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs:
        detail = []
        if a.vararg or a.kwarg:
            detail.append("no *args/**kwargs")
        if a.kwonlyargs:
            detail.append("no keyword-only parameters")
        if a.posonlyargs:
            detail.append("no positional-only marker")
        extra = [p for p in _params(a) if p not in params]
        if extra:
            detail.append(f"no added parameters ({', '.join(extra)}), even with defaults")
        hint = f" ({'; '.join(detail)})" if detail else ""
        message = f"the signature must stay {expected}; found {found}{hint}"
        problems.append(Violation(line, message, field))
    return problems


def _single_binding(
    bindings: list[Binding], name: str, what: str, direct: Sequence[ast.stmt]
) -> tuple[ast.AST | None, list[Violation]]:
    """The one allowed binding of ``name`` (a def/class directly in ``direct``) and the others."""
    mine = [b for b in bindings if b.name == name]
    definition = next(
        (
            b.node
            for b in mine
            if b.kind in ("function definition", "class definition") and b.node in direct
        ),
        None,
    )
    problems = [
        Violation(
            getattr(b.node, "lineno", 0),
            f"{name} is rebound by {_article(b.kind)} {b.kind}; {what} must be defined exactly once and never "
            "reassigned, imported over, shadowed or deleted",
        )
        for b in mine
        if b.node is not definition
    ]
    return definition, problems


def _check_signature(tree: ast.Module, inv: SignatureInvariant) -> list[Violation]:
    name = inv.function
    expected = f"{name}({', '.join(inv.params)})"
    definition, problems = _single_binding(
        list(scope_bindings(tree.body)), name, f"the module-level function {expected}", tree.body
    )
    if definition is None:
        problems.insert(
            0,
            Violation(
                0,
                f"the module-level function {expected} is missing; it must stay a plain def "
                "directly in the module body",
                "function",
            ),
        )
    elif isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef):
        problems += _signature_problems(name, definition, inv.params, "params")
    else:
        line = getattr(definition, "lineno", 0)
        problems.append(Violation(line, f"{name} must be a function", "function"))
    for node in _globals_naming(tree, name):
        problems.append(
            Violation(
                getattr(node, "lineno", 0),
                f"'global {name}' would let a function rebind {name}",
            )
        )
    return problems


def _class_node(tree: ast.Module | None, name: str) -> ast.ClassDef | None:
    if tree is None:
        return None
    return next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)


def _check_class(
    tree: ast.Module, inv: ClassInvariant, original: ast.Module | None
) -> list[Violation]:
    name = inv.name
    definition, problems = _single_binding(
        list(scope_bindings(tree.body)), name, f"the module-level class {name}", tree.body
    )
    if not isinstance(definition, ast.ClassDef):
        if definition is None:
            message = f"the module-level class {name} is missing; it must stay a class"
            problems.insert(0, Violation(0, message, "name"))
        else:
            line = getattr(definition, "lineno", 0)
            problems.append(Violation(line, f"{name} must be a class", "name"))
        return problems
    before = _class_node(original, name)
    expected_bases = inv.bases
    if expected_bases is None:
        expected_bases = [ast.unparse(b) for b in before.bases] if before is not None else []
    bases = [ast.unparse(b) for b in definition.bases]
    if bases != expected_bases:
        problems.append(
            Violation(
                definition.lineno,
                f"class {name} must keep its bases ({', '.join(expected_bases) or 'none'}); "
                f"found ({', '.join(bases) or 'none'})",
                "bases",
            )
        )
    keywords = [ast.unparse(k) for k in definition.keywords]
    expected_keywords = [ast.unparse(k) for k in before.keywords] if before is not None else []
    if keywords != expected_keywords:
        problems.append(
            Violation(definition.lineno, f"class {name} must not add a metaclass or class keywords")
        )
    decorators = [ast.unparse(d) for d in definition.decorator_list]
    expected_decorators = (
        [ast.unparse(d) for d in before.decorator_list] if before is not None else []
    )
    if decorators != expected_decorators:
        problems.append(Violation(definition.lineno, f"class {name} must not be decorated"))
    class_bindings = list(scope_bindings(definition.body))
    for method, params in inv.methods.items():
        qual = f"{name}.{method}"
        found, rebinds = _single_binding(
            class_bindings, method, f"the method {qual}", definition.body
        )
        problems += rebinds
        if found is None:
            problems.append(
                Violation(
                    definition.lineno,
                    f"class {name} must define {qual}({', '.join(params)}) directly in its body",
                    f"methods.{method}",
                )
            )
        elif isinstance(found, ast.FunctionDef | ast.AsyncFunctionDef):
            problems += _signature_problems(qual, found, params, f"methods.{method}")
    return problems


def check_invariants(
    tree: ast.Module,
    invariants: Sequence[SignatureInvariant | ClassInvariant],
    original: ast.Module | None = None,
) -> list[Violation]:
    """Violations of ``invariants`` in ``tree`` (``original``: the unedited file, for defaults)."""
    problems: list[Violation] = []
    for inv in invariants:
        if inv.kind == "signature":
            problems += _check_signature(tree, inv)
        else:
            problems += _check_class(tree, inv, original)
    return sorted(problems, key=lambda v: v.line)

"""The code policy: what code written into an editable region may do (AST checks).

Region code runs inside the process that trains the model and, through the saved model
source, inside the trusted evaluator. The policy keeps it to computation: imports only from
the task's allow-list; no file, network, process, introspection or global-state access; no
reaching the training loop's state; no monkeypatching of imported modules or of the frozen
code's names; no rebinding of frozen module-level names or builtins. Only nodes that start on
a line of an open region are judged — frozen code is trusted as written.

This is a deny-list over a small, known surface (the regions are a few functions and classes),
backed by the sandbox at run time; it is not meant to be a general Python jail.
"""

from __future__ import annotations

import ast
import builtins
import io
import re
import tokenize
from collections.abc import Iterable
from collections.abc import Set as AbstractSet

from env._invariants import Binding, Violation, bound_names, scope_bindings
from env._spec import CodePolicy

__all__ = ["FORBIDDEN_BUILTINS", "FORBIDDEN_MODULE_NAMES", "Violation", "check_policy"]

# fmt: off
FORBIDDEN_BUILTINS = frozenset({
    "open", "exec", "eval", "compile", "__import__", "getattr", "setattr", "delattr", "globals",
    "locals", "vars", "dir", "breakpoint", "input", "memoryview", "help", "exit", "quit",
    "copyright", "credits", "license", "__build_class__", "__loader__", "__spec__",
    "__builtins__",
})
FORBIDDEN_MODULE_NAMES = frozenset({
    "os", "sys", "subprocess", "socket", "builtins", "importlib", "ctypes", "pickle", "shutil",
    "pathlib", "signal", "threading", "multiprocessing", "inspect", "gc", "io", "marshal",
    "types", "code", "codeop", "tempfile", "glob", "sysconfig", "site", "weakref", "urllib",
    "http", "requests", "asyncio", "concurrent", "resource", "mmap", "fcntl", "pty", "select",
    "selectors", "ssl", "tracemalloc", "faulthandler", "atexit", "runpy", "zipimport",
    "pkgutil", "dill", "cloudpickle", "shelve", "dbm", "sqlite3",
})
# Dotted names (after resolving import aliases) that region code may not touch: file, network
# and process access, global RNG/backend state, compilation and extension loading.
_DENIED_PREFIXES = (
    "torch.load", "torch.save", "torch.hub", "torch.utils.cpp_extension", "torch.utils.data",
    "torch.utils.tensorboard", "torch.classes", "torch.ops", "torch.library",
    "torch.distributed", "torch.multiprocessing", "torch.manual_seed", "torch.seed",
    "torch.random", "torch.use_deterministic_algorithms", "torch.backends",
    "torch.cuda.manual_seed", "torch.default_generator", "torch.cuda.default_generators",
    "torch.from_file", "torch.compiler", "torch.cuda.manual_seed_all", "torch.cuda.memory",
    "torch.cuda.random", "torch.compile", "torch.jit", "torch.export", "torch.package",
    "torch.serialization", "torch.overrides", "torch.profiler", "torch.nn.modules",
    "torch.autograd.graph", "torch.autograd.set_detect_anomaly", "torch.cuda.set_rng_state",
    "numpy.load", "numpy.save", "numpy.savez", "numpy.savez_compressed", "numpy.fromfile",
    "numpy.memmap", "numpy.loadtxt", "numpy.savetxt", "numpy.genfromtxt", "numpy.lib",
    "numpy.ctypeslib", "numpy.random", "numpy.f2py", "numpy.testing", "numpy.DataSource",
)
# Attribute names refused on any object: frame/code introspection and file access.
_DENIED_ATTRIBUTES = frozenset({
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "gi_frame", "gi_code",
    "cr_frame", "cr_code", "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code", "tofile",
    "from_file", "register_module_forward_hook", "register_module_forward_pre_hook",
    "register_module_backward_hook", "register_module_full_backward_hook",
})
# fmt: on
_ALLOWED_DUNDER_ATTRIBUTES = frozenset({"__init__"})
_FORMAT_DUNDER = re.compile(r"\{[^{}]*__\w+")
_BUILTIN_NAMES = frozenset(dir(builtins))


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _import_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name → dotted target for every import in the file (all scopes, conservatively)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _import_modules(tree: ast.Module) -> dict[str, str]:
    """Local name → the module an import of it comes from (what the allow-list is about)."""
    modules: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                modules[alias.asname or alias.name] = "." * node.level + (node.module or "")
    return modules


def _denied(dotted: str, policy: CodePolicy) -> bool:
    parts = dotted.split(".")
    if parts[0] == "torch" and any(p.startswith("set_") or p.startswith("_") for p in parts[1:]):
        return True  # torch.set_default_dtype, torch.cuda.set_device, torch._C, torch._dynamo
    prefixes = (*_DENIED_PREFIXES, *policy.forbidden_calls)
    return any(dotted == p or dotted.startswith(p + ".") for p in prefixes)


def _import_allowed(module: str, policy: CodePolicy) -> bool:
    for allowed in policy.allowed_imports:
        if module == allowed or (policy.allow_submodules and module.startswith(allowed + ".")):
            return True
    return False


def _root_name(node: ast.expr) -> ast.Name | None:
    """``a`` for ``a.b[c].d``; None when the chain starts at a call or a literal."""
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
        node = node.value
    return node if isinstance(node, ast.Name) else None


def _function_locals(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    args = node.args
    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    if isinstance(node, ast.Lambda):
        return names
    return names | {b.name for b in scope_bindings(node.body)}


class _Checker(ast.NodeVisitor):
    def __init__(
        self,
        tree: ast.Module,
        open_lines: AbstractSet[int],
        policy: CodePolicy,
        region_names: set[str],
    ) -> None:
        self.open_lines = open_lines
        self.policy = policy
        self.region_names = region_names
        self.aliases = _import_aliases(tree)
        self.modules = set(self.aliases)
        frozen_imports = ast.Module(
            body=[s for s in tree.body if getattr(s, "lineno", 0) not in open_lines],
            type_ignores=[],
        )
        self.frozen_imports = _import_aliases(frozen_imports)
        self.frozen_import_modules = _import_modules(frozen_imports)
        self.frozen_functions = {
            stmt.name
            for stmt in tree.body
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef)
            and stmt.lineno not in open_lines
        }
        direct: set[str] = set()
        nested: set[str] = set()
        for stmt in tree.body:
            if getattr(stmt, "lineno", 0) in open_lines:
                continue
            for binding in scope_bindings([stmt]):
                if getattr(binding.node, "lineno", 0) in open_lines:
                    continue
                is_direct = binding.node is stmt
                (direct if is_direct else nested).add(binding.name)
        # Names bound by frozen code; the ones bound only inside compound statements (the
        # `if __name__ == "__main__":` training loop) are run-time state, invisible to regions.
        self.frozen_names = (direct | nested) - region_names
        self.runtime_state = nested - direct - region_names
        self.forbidden_names = (
            FORBIDDEN_BUILTINS | FORBIDDEN_MODULE_NAMES | set(policy.forbidden_names)
        )
        self.scopes: list[tuple[str, set[str]]] = []
        self.violations: list[Violation] = []
        self.tainted = self._tainted_names(tree)

    def _tainted_names(self, tree: ast.Module) -> set[str]:
        """Names region code binds to something reached from a module, a frozen name or a
        builtin (``cls = nn.Linear``, ``c = type(m)``): setting attributes on them could
        monkeypatch shared objects. Scopes are ignored, which errs on the safe side."""
        pairs: list[tuple[list[str], ast.AST]] = []
        for node in ast.walk(tree):
            where = node.target if isinstance(node, ast.comprehension) else node
            if getattr(where, "lineno", 0) not in self.open_lines:
                continue
            if isinstance(node, ast.Assign):
                names = [n.id for t in node.targets for n in bound_names(t)]
                pairs.append((names, node.value))
            elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr) and node.value:
                pairs.append(([n.id for n in bound_names(node.target)], node.value))
            elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
                pairs.append(([n.id for n in bound_names(node.target)], node.iter))
            elif isinstance(node, ast.With | ast.AsyncWith):
                for item in node.items:
                    if item.optional_vars is not None:
                        names = [n.id for n in bound_names(item.optional_vars)]
                        pairs.append((names, item.context_expr))
        sources = self.modules | self.frozen_names | _BUILTIN_NAMES
        tainted: set[str] = set()
        changed = True
        while changed:
            changed = False
            for names, value in pairs:
                used = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
                if used & (sources | tainted) and not set(names) <= tainted:
                    tainted |= set(names)
                    changed = True
        return tainted

    # -- helpers ------------------------------------------------------------------------------

    def visit(self, node: ast.AST) -> None:
        # Frozen subtrees with no region line inside need no visit (most of a large file).
        first, last = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
        if (
            isinstance(first, int)
            and isinstance(last, int)
            and not any(n in self.open_lines for n in range(first, last + 1))
        ):
            return
        super().visit(node)

    def _in_region(self, node: ast.AST) -> bool:
        return getattr(node, "lineno", 0) in self.open_lines

    def _flag(self, node: ast.AST, message: str) -> None:
        self.violations.append(Violation(getattr(node, "lineno", 0), message))

    def _is_local(self, name: str) -> bool:
        for index, (kind, names) in enumerate(reversed(self.scopes)):
            if kind == "class" and index > 0:
                continue  # class scopes are not visible from the functions inside them
            if name in names:
                return True
        return False

    def _dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            if self._is_local(node.id):
                return None
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def _with_scope(self, kind: str, names: set[str], body: Iterable[ast.AST]) -> None:
        self.scopes.append((kind, names))
        for child in body:
            self.visit(child)
        self.scopes.pop()

    # -- scopes -------------------------------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for child in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if child is not None:
                self.visit(child)
        for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
            self._check_identifier(arg, arg.arg)
            if arg.annotation is not None:
                self.visit(arg.annotation)
        if node.returns is not None:
            self.visit(node.returns)
        self._check_identifier(node, node.name)
        self._with_scope("function", _function_locals(node), node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for child in [*node.args.defaults, *node.args.kw_defaults]:
            if child is not None:
                self.visit(child)
        self._with_scope("function", _function_locals(node), [node.body])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for child in [*node.decorator_list, *node.bases, *node.keywords]:
            self.visit(child)
        self._check_identifier(node, node.name)
        self._with_scope("class", {b.name for b in scope_bindings(node.body)}, node.body)

    def _visit_comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        names = {
            n.id for gen in node.generators for n in ast.walk(gen.target) if isinstance(n, ast.Name)
        }
        self.visit(node.generators[0].iter)
        self.scopes.append(("function", names))
        for gen in node.generators:
            self.visit(gen.target)
            if gen is not node.generators[0]:
                self.visit(gen.iter)
            for cond in gen.ifs:
                self.visit(cond)
        for attr in ("elt", "key", "value"):
            child = getattr(node, attr, None)
            if child is not None:
                self.visit(child)
        self.scopes.pop()

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension

    # -- rules --------------------------------------------------------------------------------

    def _check_identifier(self, node: ast.AST, name: str) -> None:
        if (
            self._in_region(node)
            and _is_dunder(name)
            and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ):
            self._flag(
                node, f"the name {name!r} is not allowed (dunder names reach interpreter internals)"
            )

    def visit_Import(self, node: ast.Import) -> None:
        if self._in_region(node):
            for alias in node.names:
                self._check_import(node, alias.name)
                if alias.asname and _is_dunder(alias.asname):
                    self._flag(node, f"the name {alias.asname!r} is not allowed")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if not self._in_region(node):
            return
        if node.level or not node.module:
            self._flag(node, "relative imports are not allowed")
            return
        if not self._check_import(node, node.module):
            return
        for alias in node.names:
            if alias.name == "*":
                self._flag(
                    node, f"'from {node.module} import *' is not allowed; import names explicitly"
                )
            elif _is_dunder(alias.name) or alias.name.startswith("_"):
                self._flag(node, f"importing the private name {alias.name!r} is not allowed")
            elif _denied(f"{node.module}.{alias.name}", self.policy):
                self._flag(node, f"'{node.module}.{alias.name}' is not allowed in editable code")

    def _check_import(self, node: ast.AST, module: str) -> bool:
        if not _import_allowed(module, self.policy):
            allowed = ", ".join(self.policy.allowed_imports) or "none"
            self._flag(node, f"import of '{module}' is not allowed (allowed imports: {allowed})")
            return False
        if _denied(module, self.policy):
            self._flag(node, f"import of '{module}' is not allowed in editable code")
            return False
        return True

    def visit_Name(self, node: ast.Name) -> None:
        if self._in_region(node) and not self._is_local(node.id):
            name = node.id
            if name in self.forbidden_names:
                what = "module" if name in FORBIDDEN_MODULE_NAMES else "built-in"
                self._flag(node, f"use of the {what} '{name}' is not allowed in editable code")
            elif _is_dunder(name):
                self._flag(
                    node,
                    f"the name {name!r} is not allowed (dunder names reach interpreter internals)",
                )
            elif name in self.runtime_state and isinstance(node.ctx, ast.Load):
                self._flag(
                    node,
                    f"'{name}' is state of the frozen training loop; editable code may not read it",
                )
            elif name in self.frozen_functions and name not in self.region_names:
                self._flag(
                    node,
                    f"'{name}' is a function of the frozen training code; editable code may "
                    "not call or reference it",
                )
            elif name in self.frozen_import_modules and not _import_allowed(
                self.frozen_import_modules[name], self.policy
            ):
                allowed = ", ".join(self.policy.allowed_imports) or "none"
                self._flag(
                    node,
                    f"'{name}' comes from '{self.frozen_import_modules[name]}', which editable "
                    f"code may not use (allowed modules: {allowed})",
                )
            else:
                dotted = self.aliases.get(name)
                if dotted and _denied(dotted, self.policy):
                    self._flag(node, f"'{dotted}' is not allowed in editable code")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self._in_region(node):
            attr = node.attr
            if _is_dunder(attr) and attr not in _ALLOWED_DUNDER_ATTRIBUTES:
                self._flag(
                    node,
                    f"access to the attribute '{attr}' is not allowed (dunder attributes reach interpreter internals)",
                )
            elif attr in _DENIED_ATTRIBUTES:
                self._flag(node, f"access to the attribute '{attr}' is not allowed")
            else:
                dotted = self._dotted(node)
                if dotted and _denied(dotted, self.policy):
                    self._flag(node, f"'{dotted}' is not allowed in editable code")
                elif dotted and attr.startswith("_"):
                    self._flag(
                        node, f"access to the private module attribute '{dotted}' is not allowed"
                    )
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        if self._in_region(node):
            word = "global" if isinstance(node, ast.Global) else "nonlocal"
            self._flag(node, f"'{word}' statements are not allowed in editable code")

    visit_Nonlocal = visit_Global

    def visit_Constant(self, node: ast.Constant) -> None:
        if (
            self._in_region(node)
            and isinstance(node.value, str)
            and _FORMAT_DUNDER.search(node.value)
        ):
            self._flag(node, "a format string that reaches a dunder attribute is not allowed")

    def _check_targets(self, node: ast.stmt, targets: list[ast.expr]) -> None:
        if not self._in_region(node):
            return
        verb = "deleting" if isinstance(node, ast.Delete) else "assigning to"
        for target in targets:
            for element in _flatten(target):
                if not isinstance(element, ast.Attribute | ast.Subscript):
                    continue
                shown = ast.unparse(element)
                root = _root_name(element)
                if root is None:
                    self._flag(
                        node,
                        f"{verb} '{shown}' is not allowed: attributes may only be set on a "
                        "named object of your own (e.g. self.x = …)",
                    )
                elif root.id in self.tainted:
                    self._flag(
                        node,
                        f"{verb} '{shown}' is not allowed: '{root.id}' may refer to a module, "
                        "a class or a function of the frozen code (monkeypatching)",
                    )
                elif self._is_local(root.id):
                    continue
                elif root.id in self.modules:
                    self._flag(
                        node,
                        f"{verb} '{shown}' would monkeypatch the imported module '{root.id}'",
                    )
                elif root.id in self.frozen_names or root.id in _BUILTIN_NAMES:
                    self._flag(
                        node,
                        f"{verb} '{shown}' would modify '{root.id}', which belongs to the "
                        "frozen code",
                    )

    def visit_Assign(self, node: ast.Assign) -> None:
        self._check_targets(node, node.targets)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_targets(node, [node.target])
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check_targets(node, [node.target])
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        self._check_targets(node, node.targets)
        self.generic_visit(node)


def _flatten(target: ast.expr) -> list[ast.expr]:
    if isinstance(target, ast.Tuple | ast.List):
        return [e for elt in target.elts for e in _flatten(elt)]
    if isinstance(target, ast.Starred):
        return _flatten(target.value)
    return [target]


def _same_import(binding: Binding, frozen_imports: dict[str, str]) -> bool:
    node = binding.node
    assert isinstance(node, ast.Import | ast.ImportFrom)
    mine = _import_aliases(ast.Module(body=[node], type_ignores=[]))
    return binding.name in frozen_imports and mine.get(binding.name) == frozen_imports[binding.name]


def _identifier_violations(source: str, open_lines: AbstractSet[int]) -> list[Violation]:
    """Non-ASCII identifiers (Python NFKC-folds them, so the AST alone cannot see them)."""
    found = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    for tok in tokens:
        if tok.type == tokenize.NAME and tok.start[0] in open_lines and not tok.string.isascii():
            found.append(
                Violation(
                    tok.start[0],
                    f"the identifier {tok.string!r} is not ASCII (look-alike letters are refused)",
                )
            )
    return found


def check_policy(
    tree: ast.Module,
    source: str,
    open_lines: AbstractSet[int],
    policy: CodePolicy,
    region_names: set[str] | None = None,
) -> list[Violation]:
    """Violations of ``policy`` by the code on ``open_lines`` of a parsed file.

    ``region_names``: module-level names the regions themselves define in the original file
    (e.g. ``CONFIG_OVERRIDES``); rebinding those is the regions' business, not a violation.
    """
    checker = _Checker(tree, open_lines, policy, region_names or set())
    checker.visit(tree)
    violations = checker.violations + _identifier_violations(source, open_lines)
    for binding in scope_bindings(tree.body):
        line = getattr(binding.node, "lineno", 0)
        if line not in open_lines:
            continue
        if binding.kind == "import" and _same_import(binding, checker.frozen_imports):
            continue  # `import math` again binds the very module the frozen code imported
        if binding.name in checker.frozen_names:
            violations.append(
                Violation(
                    line,
                    f"this {binding.kind} rebinds '{binding.name}', a module-level name of the "
                    "frozen code",
                )
            )
        elif binding.name in _BUILTIN_NAMES:
            violations.append(
                Violation(line, f"this {binding.kind} rebinds the built-in '{binding.name}'")
            )
    unique = sorted(set(violations), key=lambda v: (v.line, v.message))
    return unique

"""The shape of the code, checked: what a maintainer relies on when finding their way.

- every exception the package defines is named in errors.py's tree;
- no import cycles between modules (lazy imports inside functions count too);
- no module over 500 lines;
- SendGrid's field names and headers only in ``esp/``.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from newsletter import errors

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "newsletter"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere (TYPE_CHECKING aside)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if _is_type_checking(node):
                continue
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                for candidate in (base, *(f"{base}.{a.name}" for a in node.names)):
                    if candidate in known and candidate != name:
                        found.add(candidate)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in known and a.name != name)
            for field in ("body", "orelse", "finalbody", "handlers"):
                sub = getattr(node, field, None)
                if isinstance(sub, list):
                    visit(sub)

    visit(ast.parse(path.read_text("utf-8")).body)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_over_500_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, "split these by responsibility"


def test_every_exception_is_in_the_tree() -> None:
    tree = errors.__doc__ or ""
    defined = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                re.search(r"(Error|Exception|Unknown|Refused|Rejected|Unavailable|Failed)$", n)
                or n in {"Exception", "ValueError"}
                for n in (ast.unparse(b) for b in node.bases)
            ):
                defined.add(node.name)
    missing = sorted(name for name in defined if not re.search(rf"\b{name}\b", tree))
    assert defined and missing == []


SENDGRID_WORDS = (
    "personalizations",
    "custom_args",
    "asm_group_id",
    "ip_pool",
    "sandbox_mode",
    "sg_event_id",
    "X-Twilio",
)


@pytest.mark.parametrize("word", SENDGRID_WORDS)
def test_sendgrid_vocabulary_stays_in_esp(word: str) -> None:
    outside = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "esp" not in path.relative_to(PACKAGE).parts
        and path.name != "compat.py"
        and word in path.read_text("utf-8")
    ]
    assert outside == [], f"{word!r} belongs in esp/"

"""No module reaches into another module's private members (read from the source, by ``ast``).

Three shapes are refused across modules of the package (the tree as installed: ``llm2vec_rag/``
plus ``training/``, ``export/`` and ``integrations/``):

- ``from .m import _x``: a private name imported from another module;
- ``import``/``from`` of a private module (``_encoder``) from outside its own package;
- ``obj._x`` where ``_x`` is private to another module: not defined (as a function, class,
  method, variable or ``self._x`` attribute) in the module that uses it, but defined in
  another one. ``self._x`` / ``cls._x`` and members of other libraries are not ours to police.

A needed piece is made public (and small) or moved instead. ``ALLOWED`` lists what is left
with the reason it cannot move yet.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"llm2vec_rag": "llm2vec_rag", "training": "llm2vec_rag.training",
            "export": "llm2vec_rag.export", "integrations": "llm2vec_rag.integrations"}
# (file, private name) -> why it stays for now
ALLOWED: dict[tuple[str, str], str] = {}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def modules() -> dict[str, tuple[str, ast.Module]]:
    """module name -> (path relative to the checkout, parsed source)."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            out[name] = (str(path.relative_to(ROOT)), ast.parse(path.read_text("utf-8")))
    return out


def defined_privates(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, methods, assigned names and
    attributes set on ``self`` / ``cls`` / objects it builds."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return {n for n in names if private(n)}


def resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if not level:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def reach_ins() -> list[str]:
    found = []
    mods = modules()
    privates = {name: defined_privates(tree) for name, (_, tree) in mods.items()}
    for name, (path, tree) in mods.items():
        is_package = path.endswith("__init__.py")
        own = privates[name]
        elsewhere = set().union(*(p for n, p in privates.items() if n != name))
        here = package_of(name, is_package)

        def refuse(line: int, what: str, member: str, path: str = path) -> None:
            if (path, member) not in ALLOWED:
                found.append(f"{path}:{line}: {what}")

        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = resolve(name, is_package, node.level, node.module)
                if not target.startswith("llm2vec_rag"):
                    continue
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    if full in mods:  # a module imported from its package
                        if private(alias.name) and package_of(full, False) != here:
                            refuse(node.lineno, f"imports private module {full}", alias.name)
                    elif private(alias.name) and target != name:
                        refuse(node.lineno, f"imports private {alias.name} from {target}",
                               alias.name)
                parts = target.split(".")
                for i, part in enumerate(parts):
                    owner = ".".join(parts[:i])
                    if private(part) and owner != here and not here.startswith(owner + "."):
                        refuse(node.lineno, f"imports from private module {target}", part)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == "llm2vec_rag" and any(private(p) for p in parts):
                        owner = ".".join(parts[:-1])
                        if owner != here:
                            refuse(node.lineno, f"imports private module {alias.name}",
                                   parts[-1])
            elif isinstance(node, ast.Attribute) and private(node.attr):
                value = node.value
                if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                    continue
                if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "super":
                    continue
                if node.attr not in own and node.attr in elsewhere:
                    refuse(node.lineno, f"{ast.unparse(value)}.{node.attr}: private to "
                                        f"another module", node.attr)
    return found


def test_no_module_reaches_into_another_modules_private_members():
    found = reach_ins()
    assert not found, ("private members used across modules (make the piece public and "
                       "small, or move it):\n" + "\n".join(found))


def test_the_check_finds_each_shape(tmp_path, monkeypatch):
    """The three shapes, planted in a copy of a small package, are each reported."""
    pkg = tmp_path / "llm2vec_rag"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _helper():\n    pass\n\n\nclass A:\n"
                              "    def __init__(self):\n        self._state = 1\n")
    (pkg / "b.py").write_text("from .a import _helper\n\n\ndef f(a):\n    return a._state\n")
    sub = pkg / "sub"
    sub.mkdir()
    (sub / "__init__.py").write_text("")
    (sub / "_impl.py").write_text("X = 1\n")
    (pkg / "c.py").write_text("from .sub._impl import X\n")
    (sub / "ok.py").write_text("from ._impl import X\n")  # its own package: allowed
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGES", {"llm2vec_rag": "llm2vec_rag"})
    found = "\n".join(reach_ins())
    assert "llm2vec_rag/b.py:1: imports private _helper from llm2vec_rag.a" in found
    assert "llm2vec_rag/b.py:5: a._state: private to another module" in found
    assert "llm2vec_rag/c.py:1: imports from private module llm2vec_rag.sub._impl" in found
    assert "ok.py" not in found

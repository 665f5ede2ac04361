"""The modeling code that every MiniMind model folder carries, so it loads without this package.

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)

works in a process that never imports minimind_core: config.json's `auto_map` names the classes,
and the folder holds their source. That source is generated from the library's own modules, not
kept as a second copy by hand: config.py is written as configuration_minimind.py, model.py as
modeling_minimind.py, and every module they import with a relative import (kv_cache.py, moe.py,
losses.py, ...) is copied beside them, with each relative import rewritten to the new file names.
So a change to the model is in the next checkpoint's code as well.

One thing is left out of the copies: the registration with transformers' Auto classes (in a
folder `auto_map` does that, and a copy registered under "minimind" would make a later
`import minimind_core` in the same process find the name taken). The rest is the library's text,
line for line, under a two-line header saying where it came from.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

PACKAGE = "minimind_core"
PACKAGE_DIR = Path(__file__).resolve().parent
# library module -> the file name transformers' conventions expect in a model folder
ENTRY_FILES = {f"{PACKAGE}.config": "configuration_minimind", f"{PACKAGE}.model": "modeling_minimind"}
AUTO_MAP = {"AutoConfig": "configuration_minimind.MiniMindConfig",
            "AutoModelForCausalLM": "modeling_minimind.MiniMindForCausalLM"}


def _source_path(module: str) -> Path:
    """minimind_core.a.b -> <package>/a/b.py (or <package>/a/b/__init__.py for a package)."""
    parts = module.split(".")[1:]
    path = PACKAGE_DIR.joinpath(*parts)
    if path.is_dir():
        return path / "__init__.py"
    return path.with_suffix(".py")


def _file_stem(module: str) -> str:
    """The flat file name (without .py) a library module gets in a model folder."""
    return ENTRY_FILES.get(module) or "_".join(module.split(".")[1:])


def _package_of(module: str) -> str:
    return module if _source_path(module).name == "__init__.py" else module.rsplit(".", 1)[0]


def _imported_modules(module: str, node: ast.ImportFrom) -> list[tuple[str, str | None]]:
    """The library modules a relative import reads: [(module, name it is bound to or None)].

    `from .x import a, b` reads module x (names bound by the import itself); `from . import x`
    reads module x and binds it to the name x.
    """
    base = _package_of(module).split(".")
    if node.level > len(base):
        raise ValueError(f"{_source_path(module)}, line {node.lineno}: relative import goes above the package")
    anchor = ".".join(base[:len(base) - node.level + 1])
    if node.module:
        return [(f"{anchor}.{node.module}", None)]
    return [(f"{anchor}.{alias.name}", alias.asname or alias.name) for alias in node.names]


def _registers_auto_class(node: ast.AST) -> bool:
    """Whether a statement calls `Auto*.register(...)` anywhere inside it."""
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == "register"
                and isinstance(sub.func.value, ast.Name) and sub.func.value.id.startswith("Auto")):
            return True
    return False


def _rewritten(module: str, source: str) -> tuple[str, list[str]]:
    """(the module's text for the folder, the library modules it imports relatively)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []          # (first line, last line, replacement), 1-based
    needed: list[str] = []
    dropped: set[str] = set()
    for node in tree.body:                            # top-level registration with the Auto classes
        if _registers_auto_class(node) and isinstance(node, (ast.Try, ast.FunctionDef, ast.Expr, ast.If)):
            if isinstance(node, ast.FunctionDef):
                dropped.add(node.name)
            edits.append((node.lineno, node.end_lineno, ""))
    for node in tree.body:                            # calls of a dropped registration function
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name) and node.value.func.id in dropped):
            edits.append((node.lineno, node.end_lineno, ""))
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        indent = lines[node.lineno - 1][:node.col_offset]
        targets = _imported_modules(module, node)
        needed += [m for m, _ in targets]
        if node.module:
            names = ", ".join(a.name if a.asname is None else f"{a.name} as {a.asname}" for a in node.names)
            text = f"{indent}from .{_file_stem(targets[0][0])} import {names}\n"
        else:
            text = "".join(f"{indent}from . import {_file_stem(m)}"
                           + ("" if _file_stem(m) == bound else f" as {bound}") + "\n" for m, bound in targets)
        edits.append((node.lineno, node.end_lineno, text))
    for first, last, text in sorted(edits, reverse=True):
        lines[first - 1:last] = [text]
    return "".join(lines), needed


def model_code_files() -> dict[str, str]:
    """{file name: text} of the modeling code for a model folder: the library's config.py and
    model.py and every library module they import relatively, transitively."""
    from . import __version__

    files: dict[str, str] = {}
    todo = list(ENTRY_FILES)
    seen: set[str] = set()
    while todo:
        module = todo.pop(0)
        if module in seen:
            continue
        seen.add(module)
        path = _source_path(module)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the modeling code imports {module}, which has no source file")
        text, needed = _rewritten(module, path.read_text(encoding="utf-8"))
        rel = path.relative_to(PACKAGE_DIR.parent).as_posix()
        header = (f"# Generated from {rel} (minimind_core {__version__}) for this model folder: the library's\n"
                  "# source with its relative imports renamed to the files here. Edit the library, not this file.\n")
        files[f"{_file_stem(module)}.py"] = header + text
        todo += [m for m in needed if m not in seen]
    return files


def write_model_code(folder: str | Path) -> list[str]:
    """Write the modeling code into a saved MiniMind model folder and name its classes in
    config.json's `auto_map`. Returns the file names written."""
    folder = Path(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("model_type") != "minimind":
        raise ValueError(f"{config_path}: model_type is {config.get('model_type')!r}; only MiniMind folders "
                         "get the MiniMind modeling code")
    files = model_code_files()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    config["auto_map"] = dict(AUTO_MAP)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return sorted(files)


__all__ = ["AUTO_MAP", "model_code_files", "write_model_code"]

"""Generate exercise notebooks from solution notebooks (a maintainer's tool, not part of the package).

In `solutions/NN_topic.ipynb` every answer sits between a `### BEGIN SOLUTION` line and a
`### END SOLUTION` line, inside a function body. The exercise copy replaces each region by
`# YOUR CODE HERE` and `raise NotImplementedError()` at the same indentation and clears outputs.

    python tools/make_exercises.py                 # rewrite exercises/ from solutions/
    python tools/make_exercises.py --clean NB...   # strip outputs and widget state
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_BEGIN_RE = re.compile(r"^(\s*)" + re.escape(BEGIN) + r"\s*$")


def strip_solutions(source: str, where: str = "") -> str:
    out, inside, indent = [], False, ""
    for n, line in enumerate(source.split("\n"), 1):
        m = _BEGIN_RE.match(line)
        if m:
            if inside:
                raise ValueError(f"{where}: line {n}: {BEGIN} inside another solution region")
            inside, indent = True, m.group(1)
            out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
        elif line.strip() == END:
            if not inside:
                raise ValueError(f"{where}: line {n}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN} is never closed")
    return "\n".join(out)


def make_exercise(solution: dict, where: str = "") -> dict:
    nb = json.loads(json.dumps(solution))
    for i, cell in enumerate(nb["cells"]):
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code":
            src = strip_solutions(src, f"{where} cell {i}")
            cell["outputs"], cell["execution_count"] = [], None
        cell["source"] = src.splitlines(keepends=True)
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def build(solutions_dir: Path, exercises_dir: Path) -> list[Path]:
    exercises_dir.mkdir(exist_ok=True)
    written = []
    for path in sorted(solutions_dir.glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        out = exercises_dir / path.name
        out.write_text(dumps(make_exercise(nb, str(path))), encoding="utf-8")
        written.append(out)
    return written


def clean(nb: dict) -> dict:
    """The notebook without outputs, execution counts or widget state (how notebooks are committed)."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--clean":
        for name in argv[1:]:
            path = Path(name)
            path.write_text(dumps(clean(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")
            print(f"cleaned {path}")
        return 0
    root = Path(__file__).resolve().parents[1]
    for p in build(root / "solutions", root / "exercises"):
        print(f"wrote {p.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

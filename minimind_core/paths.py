"""Where the course keeps its files: the project folder, its data/ and runs/, and the sample corpus.

    PROJECT_DIR   $MINIMIND_HOME when it is set; else the course checkout you are working in: the
                  nearest folder at or above the working directory that holds a pyproject.toml
                  naming minimind_core, or both a notebooks/ and a data/ folder; else the working
                  directory itself
    DATA_DIR      PROJECT_DIR/data: MiniMind's downloaded files, tokenized caches, tokenizers
    RUNS_DIR      PROJECT_DIR/runs: one run folder per profile and stage
    SAMPLE_DIR    the bundled sample corpus and its tokenizer, shipped inside the package

The folders follow where you work, not where the package is installed, so a lesson opened from
notebooks/ and a command run from the checkout's root share one runs/ and one data/, and a plain
`pip install .` (which copies the package, not the checkout) still has the sample corpus. They
are resolved once, when this module is first imported. Nothing here imports torch or numpy.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = PACKAGE_DIR / "sample"

_PROJECT_NAME = re.compile(r"""^\s*name\s*=\s*["']minimind[_-]core["']""", re.MULTILINE)


def is_checkout(folder: Path) -> bool:
    """Whether `folder` looks like the root of a course checkout."""
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        try:
            if _PROJECT_NAME.search(pyproject.read_text(encoding="utf-8")):
                return True
        except (OSError, UnicodeDecodeError):
            pass
    return (folder / "notebooks").is_dir() and (folder / "data").is_dir()


def find_project_dir(cwd: str | Path | None = None, home: str | None = None) -> Path:
    """The project folder for a working directory `cwd` (default: the current one) and a
    MINIMIND_HOME value `home` (default: the environment's); see the module docstring."""
    home = os.environ.get("MINIMIND_HOME") if home is None else home
    if home:
        return Path(home).expanduser().resolve()
    start = Path.cwd() if cwd is None else Path(cwd).resolve()
    for folder in (start, *start.parents):
        if is_checkout(folder):
            return folder
    return start


PROJECT_DIR = find_project_dir()
DATA_DIR = PROJECT_DIR / "data"
RUNS_DIR = PROJECT_DIR / "runs"

__all__ = ["PACKAGE_DIR", "SAMPLE_DIR", "PROJECT_DIR", "DATA_DIR", "RUNS_DIR", "find_project_dir", "is_checkout"]

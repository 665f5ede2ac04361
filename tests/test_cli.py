"""The command line as a whole: help, one-line errors, fast start, where folders resolve, packaging."""
import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from minimind_core import errors
from minimind_core.cli import CLIError, data as cli_data, main
from minimind_core.paths import SAMPLE_DIR, find_project_dir, is_checkout

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minimind_core"


def run_module(*args, cwd=None, env=None, python_flags=()):
    """`python [flags] -m minimind_core ARGS` in a fresh interpreter that imports this checkout."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *python_flags, "-m", "minimind_core", *args], cwd=cwd or ROOT,
                          env=full_env, capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    proc = run_module("--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("data", "tokenizer", "export", "train", "eval"):
        assert f"\n    {command}" in proc.stdout
    with pytest.raises(SystemExit) as e:
        main(["data", "check", "--help"])
    assert e.value.code == 0


def _error_classes():
    return [getattr(errors, name) for name in errors.__all__] + [CLIError]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_domain_error_is_one_line_and_exit_2(cls, monkeypatch, tmp_path, capsys):
    if cls is errors.DataError:
        err = cls(tmp_path / "x.jsonl", 3, "expected a string, got integer", '"text"')
    else:
        err = cls(f"{cls.__name__} happened in {tmp_path}")

    def failing_handler(args):
        raise err

    monkeypatch.setattr(cli_data, "run_check", failing_handler)  # looked up when the parser is built
    rc = main(["data", "check", str(tmp_path / "x.jsonl"), "--stage", "pretrain"])
    out, err_text = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err_text == f"error: {err}\n"


def test_other_exceptions_are_not_swallowed(monkeypatch, tmp_path):
    def buggy(args):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(cli_data, "run_check", buggy)
    with pytest.raises(KeyError):
        main(["data", "check", str(tmp_path / "x.jsonl"), "--stage", "pretrain"])


def test_data_check_names_file_line_and_field(tmp_path):
    path = tmp_path / "pre.jsonl"
    path.write_text('{"text": "fine"}\n\n{"text": 7}\n{"txt": "typo"}\n', encoding="utf-8")
    proc = run_module("data", "check", str(path), "--stage", "pretrain")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == f'{path}:3: field "text": expected a string, got integer'
    assert lines[1].startswith(f'{path}:4: field "text": missing')
    assert lines[-1] == f"{path}: BAD: 1 good pretrain records, 2 bad lines, 1 blank"


def test_data_check_of_a_missing_file_is_one_line(tmp_path):
    proc = run_module("data", "check", str(tmp_path / "nope.jsonl"), "--stage", "sft")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {tmp_path / 'nope.jsonl'}: no such file") and proc.stderr.count("\n") == 1


def _imported_modules(importtime_stderr: str) -> set[str]:
    """Module names from `python -X importtime` output (`import time: self | cumulative | name`)."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.mark.parametrize("args", [
    ("--help",),
    ("data", "check", str(SAMPLE_DIR / "pretrain.jsonl"), "--stage", "pretrain"),
    ("data", "download"),
])
def test_light_commands_import_neither_torch_nor_transformers(args, tmp_path):
    proc = run_module(*args, cwd=tmp_path, python_flags=("-X", "importtime"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = _imported_modules(proc.stderr)
    assert "minimind_core.cli" in imported      # the output really lists our imports
    assert not {"torch", "transformers", "numpy"} & imported


def test_import_minimind_core_is_lazy_and_still_offers_the_model():
    code = ("import sys, minimind_core as m; light = 'torch' not in sys.modules; "
            "cfg = m.MiniMindConfig(hidden_size=64); "
            "from transformers import AutoConfig; "
            "print(light, type(AutoConfig.for_model('minimind')).__name__, m.get_profile('smoke').name)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "MiniMindConfig", "smoke"]


# ----------------------------------------------------------------------------------------------
# where the project folder is


def _checkout(root: Path) -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "data").mkdir()
    return root


def test_project_dir_is_found_from_the_working_directory(tmp_path):
    course = _checkout(tmp_path / "course")
    (course / "notebooks" / "deep").mkdir()
    assert find_project_dir(course / "notebooks" / "deep", home="") == course
    assert find_project_dir(course, home="") == course
    plain = tmp_path / "elsewhere"
    plain.mkdir()
    assert find_project_dir(plain, home="") == plain                 # no checkout above: the folder itself
    assert find_project_dir(plain, home=str(course)) == course       # MINIMIND_HOME wins


def test_a_pyproject_naming_minimind_core_marks_a_checkout(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "minimind_core"\n', encoding="utf-8")
    assert is_checkout(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "something-else"\n', encoding="utf-8")
    assert not is_checkout(tmp_path)
    assert is_checkout(ROOT)


@pytest.mark.parametrize("where, home, expected", [
    ("course/notebooks", None, "course"),
    ("elsewhere", None, "elsewhere"),
    ("elsewhere", "course", "course"),
])
def test_runs_and_data_follow_the_working_directory(tmp_path, where, home, expected):
    _checkout(tmp_path / "course")
    (tmp_path / "elsewhere").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MINIMIND_HOME", None)
    if home:
        env["MINIMIND_HOME"] = str(tmp_path / home)
    code = ("import json; from minimind_core import paths, profiles; "
            "print(json.dumps([str(paths.RUNS_DIR), str(paths.DATA_DIR), str(profiles.get_profile('tiny').run_dir('sft'))]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / where, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs, data, run_dir = map(Path, json.loads(proc.stdout))
    base = (tmp_path / expected).resolve()
    assert (runs, data, run_dir) == (base / "runs", base / "data", base / "runs" / "tiny" / "sft")


# ----------------------------------------------------------------------------------------------
# packaging and structure


SAMPLE_FILES = ["pretrain.jsonl", "sft.jsonl", "eval_qa.jsonl", "lora.jsonl", "lora_eval.jsonl", "dpo.jsonl",
                "identity.jsonl",
                "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json", "tokenizer/chat_template.jinja"]


def test_the_sample_corpus_lives_in_the_package():
    for name in SAMPLE_FILES:
        assert (SAMPLE_DIR / name).is_file(), name
    assert SAMPLE_DIR.parent == PACKAGE


def test_a_built_wheel_carries_the_sample_corpus_and_not_the_tools(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(PACKAGE, src / "minimind_core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(tmp_path / "wheel")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("minimind_core-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in SAMPLE_FILES:
        assert f"minimind_core/sample/{name}" in names, name
    assert "minimind_core/cli/__init__.py" in names and "minimind_core/paths.py" in names
    assert not any(n.startswith("tools/") or "make_exercises" in n for n in names)


def _relative_imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The minimind_core modules that `module` (at `path`) imports anywhere in its body."""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            candidates = [f"{target}.{a.name}" for a in node.names] or [target]
            candidates = [c if c in modules else target for c in candidates]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for c in candidates:
            while c and c not in modules:
                c = c.rpartition(".")[0]
            if c and c != module:
                found.add(c)
    return found


def _import_graph() -> dict[str, set[str]]:
    files = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return {m: _relative_imports(p, m, set(files)) for m, p in files.items()}


def test_no_import_cycle_in_the_package():
    graph = _import_graph()
    cycles, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert "minimind_core.jsonl" in graph["minimind_core.cli.data"]  # the graph really holds the imports
    assert cycles == []


def test_library_modules_do_not_import_the_command_line():
    graph = _import_graph()
    for module, imports in graph.items():
        if module.startswith("minimind_core.cli") or module == "minimind_core.__main__":
            continue
        assert not [m for m in imports if m.startswith("minimind_core.cli")], module

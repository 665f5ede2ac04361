"""Exercise notebooks are generated from the solutions, and each check tells right from wrong."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from minimind_core.checks import CheckResult, check, expect_tensor, call_learner

ROOT = Path(__file__).resolve().parents[1]


def _load_tool(name: str):
    """A script of tools/ as a module (tools/ is not a package and not installed)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool("make_exercises")
dumps, make_exercise, strip_solutions = tool.dumps, tool.make_exercise, tool.strip_solutions


def test_strip_solutions_keeps_indentation():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n\nprint(f)"
    assert strip_solutions(src) == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(f)"
    with pytest.raises(ValueError, match="never closed"):
        strip_solutions("### BEGIN SOLUTION\nx = 1")


@pytest.mark.parametrize("solution", sorted((ROOT / "solutions").glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_exercises_are_generated(solution):
    exercise = ROOT / "exercises" / solution.name
    assert exercise.exists(), f"{exercise} is missing: run python tools/make_exercises.py"
    expected = dumps(make_exercise(json.loads(solution.read_text(encoding="utf-8"))))
    assert exercise.read_text(encoding="utf-8") == expected, \
        f"{exercise} differs from what solutions/ generates: run python tools/make_exercises.py"
    text = solution.read_text(encoding="utf-8")
    assert text.count("### BEGIN SOLUTION") >= 3, "each lesson has at least three exercises"


def test_check_messages():
    @check("double")
    def check_double(fn):
        x = torch.arange(4.0)
        expect_tensor(call_learner(fn, x), x * 2, "double(x)")

    assert check_double(lambda x: x * 2).passed
    stub = check_double(lambda x: (_ for _ in ()).throw(NotImplementedError()))
    assert not stub.passed and str(stub).startswith("⏳") and "not done yet" in stub.message
    wrong = check_double(lambda x: x * 2 + (x == 3))
    assert not wrong.passed
    assert "first at index [3]: expected 6, got 7" in wrong.message
    shape = check_double(lambda x: (x * 2)[None])
    assert "expected shape (4,), got (1, 4)" in shape.message
    crash = check_double(lambda x: x.nope())
    assert "raised AttributeError" in crash.message
    assert isinstance(stub, CheckResult) and "\n" not in str(wrong)

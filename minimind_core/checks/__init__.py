"""Automatic checks for the exercise notebooks: one function per exercise.

Each check runs the learner's function and the library's implementation on the same random
inputs (edge cases included) and returns a `CheckResult` that the notebook displays as one or two
lines: what was expected and what came back. A check never raises: a learner's
`NotImplementedError` reads "not done yet", any other exception is reported in one line, so the
notebook carries on (the cells after a check use the library version).

    from minimind_core.checks import lesson03 as checks
    checks.check_rms_norm(my_rms_norm)
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass

import torch


class CheckFailed(Exception):
    """Raised inside a check to stop at the first mismatch; turned into a failed CheckResult."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "✅" if self.passed else ("⏳" if self.message.startswith("not done yet") else "❌")
        return f"{mark} {self.name}: {self.message}"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:  # a coloured line in Jupyter
        import html

        color = "#1a7f37" if self.passed else "#b35900"
        return f'<pre style="color:{color};margin:0">{html.escape(str(self))}</pre>'


def call_learner(fn, *args, **kwargs):
    """Call the learner's function; turn its exceptions into a one-line CheckFailed."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed("not done yet: the function still raises NotImplementedError") from None
    except CheckFailed:
        raise
    except Exception as e:  # the learner's own bug: say where, briefly
        frames = traceback.extract_tb(e.__traceback__)
        where = ""
        if frames:
            last = frames[-1]
            where = f" (line {last.lineno}: {last.line.strip()})" if last.line else f" (line {last.lineno})"
        raise CheckFailed(f"your function raised {type(e).__name__}: {e}{where}") from None


def expect_tensor(got, expected: torch.Tensor, what: str = "result", atol: float = 1e-5,
                  rtol: float = 1e-5, check_dtype: bool = True) -> None:
    """Compare a learner's tensor with the expected one; raise CheckFailed with a short message."""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}: expected a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        raise CheckFailed(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    if check_dtype and got.dtype != expected.dtype:
        raise CheckFailed(f"{what}: expected dtype {expected.dtype}, got {got.dtype}")
    g, e = got.detach().cpu(), expected.detach().cpu()
    if g.is_floating_point() or e.is_floating_point():
        g, e = g.to(torch.float64), e.to(torch.float64)
        close = torch.isclose(g, e, atol=atol, rtol=rtol) | (torch.isnan(g) & torch.isnan(e))
    else:
        close = g == e
    if not bool(close.all()):
        idx = tuple(int(i) for i in (~close).nonzero()[0])
        n_bad = int((~close).sum())
        raise CheckFailed(f"{what}: {n_bad} of {close.numel()} values differ; first at index {list(idx)}: "
                          f"expected {e[idx].item():.6g}, got {g[idx].item():.6g}")


def expect_equal(got, expected, what: str = "result") -> None:
    if got != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {got!r}")


def run_check(name: str, body) -> CheckResult:
    """Run `body()` (which raises CheckFailed on a mismatch) and wrap the outcome."""
    try:
        detail = body()
    except CheckFailed as e:
        return CheckResult(name, False, str(e))
    return CheckResult(name, True, detail or "correct")


def check(name: str):
    """Decorator: `@check("RMSNorm")` turns a function that raises CheckFailed into a check."""
    def wrap(body):
        import functools

        @functools.wraps(body)
        def run(*args, **kwargs):
            return run_check(name, lambda: body(*args, **kwargs))
        run.check_name = name
        return run
    return wrap

"""Launching a training run as its own process, its output streamed line by line.

    torchrun_command(stage, nproc, profile, extra)   `torchrun ... -m minimind_core train STAGE` with this Python
    stream_command(cmd, on_line, poll)               run it, hand each output line on, poll (e.g. redraw a plot)

Lessons 04 and 05 train on several GPUs this way: a notebook cannot host the processes of
`torch.distributed` itself, so it starts torchrun and follows the run's output and metrics file.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence


def stream_command(cmd: Sequence[str], on_line: Callable[[str], None] | None = None,
                   poll: Callable[[], object] | None = None, poll_every: float = 2.0, env: dict | None = None,
                   cwd: str | Path | None = None) -> int:
    """Run `cmd`, hand every line of its output (stdout and stderr together) to `on_line`
    (default: print it) as it comes, call `poll()` at most every `poll_every` seconds (e.g. to
    redraw a live plot from the run's metrics file) and once at the end. Returns the exit code.
    """
    on_line = on_line or (lambda s: print(s, flush=True))
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            encoding="utf-8", errors="replace", env={**os.environ, **(env or {})},
                            cwd=None if cwd is None else str(cwd))
    last = time.monotonic()
    try:
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
            if poll is not None and time.monotonic() - last >= poll_every:
                poll()
                last = time.monotonic()
        rc = proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
        raise
    if poll is not None:
        poll()
    return rc


def torchrun_command(stage: str, nproc: int, profile: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """`torchrun --nproc_per_node N -m minimind_core train STAGE --profile P ...` with this Python."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nproc)}",
           "-m", "minimind_core", "train", stage]
    if profile:
        cmd += ["--profile", profile]
    return cmd + list(extra)


__all__ = ["stream_command", "torchrun_command"]

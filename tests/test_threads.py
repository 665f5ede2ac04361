"""Threads on a busy CPU: importing the package before torch makes waiting OpenMP threads sleep,
and training picks one thread when that could not be arranged."""
import os
import subprocess
import sys

import pytest

from minimind_core.train.env import default_threads

PROBE = ("import os, sys\n"
         "{first}\n"
         "import minimind_core, torch\n"
         "from minimind_core.train.env import default_threads\n"
         "print(os.environ.get('OMP_WAIT_POLICY'), default_threads())\n")


def probe(first: str = "", **env) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()


def test_importing_the_package_first_sets_passive_waiting():
    policy, threads = probe()
    assert policy == "PASSIVE" and int(threads) == min(2, os.cpu_count() or 2)


def test_a_policy_the_user_set_is_kept():
    assert probe(OMP_WAIT_POLICY="ACTIVE")[0] == "ACTIVE"


def test_torch_imported_first_means_one_training_thread():
    policy, threads = probe(first="import torch")
    assert policy == "None" and threads == "1"


def test_default_threads_share_the_cores(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert default_threads(1) == 2 and default_threads(4) == 2 and default_threads(8) == 1
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert default_threads(1) == 1


def omp_spincount(code: str) -> str:
    """GOMP_SPINCOUNT as the OpenMP runtime loaded by torch reports it (libgomp prints its settings
    when OMP_DISPLAY_ENV=VERBOSE): 0 means waiting threads sleep at once."""
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", code], env={**clean, "OMP_DISPLAY_ENV": "VERBOSE"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "GOMP_SPINCOUNT" in line]
    if not lines:
        pytest.skip("torch's OpenMP runtime here is not libgomp (no GOMP_SPINCOUNT in its report)")
    return lines[0].split("=")[1].strip().strip("'")


def test_openmp_sees_the_policy_when_the_package_comes_first():
    assert omp_spincount("import minimind_core, torch; torch.ones(2)") == "0"
    assert omp_spincount("import torch, minimind_core; torch.ones(2)") != "0"     # too late: it spins

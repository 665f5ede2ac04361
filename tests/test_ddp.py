"""Distributed data parallel on the CPU (gloo), launched with torchrun exactly as on GPUs.

- 2 ranks x batch 4 end with the same weights as 1 process x batch 8 (the same global batches).
- A rank that fails makes the whole job exit non-zero, promptly, instead of hanging.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_train import make_corpus  # noqa: E402

from minimind_core import checkpoint as ck  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("ddp_corpus"))


def _args(corpus, out, batch_size, steps=4):
    return ["train", "pretrain", "--profile", "smoke", "--data", str(corpus["pretrain"]),
            "--tokenizer", str(corpus["tokenizer"]), "--out", str(out),
            "--cache-dir", str(corpus["pretrain"].parent / "cache"), "--max-steps", str(steps),
            "--seq-len", "64", "--batch-size", str(batch_size), "--accum", "2", "--lr", "1e-2",
            "--log-every", "1", "--no-progress", "--threads", "1"]


def _torchrun(nproc, args, timeout=240, module=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--standalone", "--max_restarts", "0"]
    cmd += ["-m", "minimind_core", *args] if module else args
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINIMIND_DIST_TIMEOUT": "60"}
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return proc, time.time() - t


def test_two_ranks_match_one_process_over_the_same_global_batch(corpus, tmp_path):
    from safetensors.torch import load_file

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # warm the token cache once so that both runs read the same tokens
    one = subprocess.run([sys.executable, "-m", "minimind_core", *_args(corpus, tmp_path / "one", 8)],
                         capture_output=True, text=True, timeout=240, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two, _ = _torchrun(2, _args(corpus, tmp_path / "two", 4))
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_file(str(ck.latest_checkpoint(tmp_path / "one") / "model.safetensors"))
    b = load_file(str(ck.latest_checkpoint(tmp_path / "two") / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4)
    ra, rb = ck.read_metrics(tmp_path / "one"), ck.read_metrics(tmp_path / "two")
    assert [r["tokens"] for r in ra] == [r["tokens"] for r in rb] == [1024 * s for s in range(1, 5)]
    for x, y in zip(ra, rb):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-4)
    # only rank 0 logged: one parameter-count line, one log line per step
    assert two.stdout.count("MiniMind模型参数量") == 1
    assert two.stdout.count("Epoch:[") == 4
    info = ck.read_json(tmp_path / "two" / ck.RUN_INFO)
    assert info["world_size"] == 2
    # plan_run for two ranks predicts the run: each rank gets half of every epoch
    from minimind_core.train import plan_run

    kw = dict(data=corpus["pretrain"], tokenizer=corpus["tokenizer"], cache_dir=corpus["pretrain"].parent / "cache",
              seq_len=64, accum=2, max_steps=4)
    two_plan = plan_run("pretrain", "smoke", world=2, batch_size=4, **kw)
    one_plan = plan_run("pretrain", "smoke", batch_size=8, **kw)
    assert f"{two_plan.batches_per_epoch} batches per epoch per rank" in two.stdout
    assert f"{one_plan.batches_per_epoch} batches per epoch per rank" in one.stdout
    assert two_plan.tokens_per_step == one_plan.tokens_per_step == rb[0]["tokens"]


FAULTY = r'''
import os, sys
import minimind_core.train.tasks as T

_forward = T.PretrainTask.forward
calls = {"n": 0}

def forward(self, model, micro):
    calls["n"] += 1
    if os.environ.get("RANK") == "1" and calls["n"] == 3:
        raise RuntimeError("injected failure on rank 1")
    return _forward(self, model, micro)

T.PretrainTask.forward = forward
from minimind_core.cli import main
sys.exit(main(sys.argv[1:]))
'''


def test_a_failing_rank_ends_the_job_with_an_error(corpus, tmp_path):
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY)
    proc, took = _torchrun(2, [str(script), *_args(corpus, tmp_path / "f", 4, steps=50)], timeout=180,
                           module=False)
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stderr
    assert "rank 1 failed" in proc.stderr
    assert took < 120, f"the job took {took:.0f}s to stop"

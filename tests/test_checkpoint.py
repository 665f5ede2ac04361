"""Run folders: atomic checkpoints, safe loading, metrics, and bit-identical resume after SIGKILL."""
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minimind_core import checkpoint as ck

sys.path.insert(0, str(Path(__file__).parent))
from test_train import make_corpus  # noqa: E402


def small_model():
    from minimind_core import MiniMindConfig, MiniMindForCausalLM

    torch.manual_seed(0)
    return MiniMindForCausalLM(MiniMindConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                              num_key_value_heads=1, vocab_size=300, max_position_embeddings=64))


def test_save_keeps_newest_and_skips_incomplete(tmp_path):
    m = small_model()
    for step in (1, 2, 3):
        ck.save_checkpoint(tmp_path, step, model=m, trainer_state={"step": step}, keep=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step_000002", "step_000003"]
    # leftovers of a save that was killed: a hidden temp folder and a folder without checkpoint.json
    (tmp_path / "checkpoints" / ".tmp-step_000004-123").mkdir()
    (tmp_path / "checkpoints" / "step_000005").mkdir()
    (tmp_path / "checkpoints" / "step_000005" / "config.json").write_text("{")
    assert ck.latest_checkpoint(tmp_path).name == "step_000003"
    assert ck.resolve_model_dir(tmp_path).name == "step_000003"
    ck.clean_partial(tmp_path)
    assert not (tmp_path / "checkpoints" / ".tmp-step_000004-123").exists()
    loaded = ck.load_model(tmp_path)
    for (k, a), b in zip(m.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    assert ck.load_trainer_state(ck.latest_checkpoint(tmp_path))["step"] == 3


def test_resolve_model_dir_errors(tmp_path):
    with pytest.raises(ck.CheckpointError, match="no such folder"):
        ck.resolve_model_dir(tmp_path / "nope")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ck.CheckpointError, match="found a file"):
        ck.resolve_model_dir(tmp_path / "f.txt")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ck.CheckpointError, match="without a complete checkpoint"):
        ck.resolve_model_dir(tmp_path / "run")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text("{}")
    with pytest.raises(ck.CheckpointError, match="no model.safetensors"):
        ck.resolve_model_dir(tmp_path / "cfg")
    small_model().save_pretrained(str(tmp_path / "model"))
    assert ck.resolve_model_dir(tmp_path / "model") == tmp_path / "model"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")   # the hand-made file
def test_resume_state_loading_runs_no_code(tmp_path):
    d = tmp_path / "checkpoints" / "step_000001"
    d.mkdir(parents=True)
    with open(d / ck.TRAINER_STATE, "wb") as f:
        pickle.dump({"step": 1, "x": _Evil()}, f)
    (d / ck.CHECKPOINT_INFO).write_text("{}")
    with pytest.raises(ck.CheckpointError, match="cannot read the resume state"):
        ck.load_trainer_state(d)


def test_rng_state_roundtrip_through_safe_load(tmp_path):
    import numpy as np

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = ck.rng_state()
    torch.save({"rng": [state]}, tmp_path / "s.pt")
    expect = (random.random(), float(np.random.rand()), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ck.set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"][0])
    got = (random.random(), float(np.random.rand()), torch.rand(3))
    assert got[0] == expect[0] and got[1] == expect[1] and torch.equal(got[2], expect[2])


def test_metrics_log_truncates_on_resume(tmp_path):
    log = ck.MetricsLog(tmp_path)
    for s in (5, 10, 15):
        log.write({"step": s, "loss": 1.0 / s})
    log.close()
    with open(tmp_path / ck.METRICS, "a") as f:
        f.write('{"step": 20, "lo')  # a row torn by a kill
    assert [r["step"] for r in ck.read_metrics(tmp_path)] == [5, 10, 15]
    log = ck.MetricsLog(tmp_path, resume_step=10)
    log.write({"step": 15, "loss": 0.5})
    log.close()
    assert [(r["step"], r["loss"]) for r in ck.read_metrics(tmp_path)] == [(5, 0.2), (10, 0.1), (15, 0.5)]


# ----------------------------------------------------------------------------------------------
# kill -9 at a random moment, resume, and get the very same weights


def _cmd(corpus, out, *extra):
    return [sys.executable, "-m", "minimind_core", "train", "pretrain", "--profile", "smoke",
            "--data", str(corpus["pretrain"]), "--tokenizer", str(corpus["tokenizer"]), "--out", str(out),
            "--cache-dir", str(corpus["pretrain"].parent / "cache"), "--max-steps", "24", "--seq-len", "64",
            "--batch-size", "4", "--accum", "2", "--save-every", "1", "--log-every", "3", "--warmup", "3",
            "--no-progress", "--threads", "1", *extra]


def _final_weights(out):
    from safetensors.torch import load_file

    last = ck.latest_checkpoint(out)
    assert last is not None and last.name == "step_000024", last
    return (last / "model.safetensors").read_bytes(), load_file(str(last / "model.safetensors"))


def test_sigkill_at_random_moment_then_resume_is_bit_identical(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    straight = subprocess.run(_cmd(corpus, tmp_path / "straight"), env=env, capture_output=True, text=True,
                              timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    train_time = ck.read_metrics(tmp_path / "straight")[-1]["elapsed_s"]

    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    out = tmp_path / "killed"
    kills = 0
    for attempt in range(2):  # kill twice, each time at a random moment after training started
        proc = subprocess.Popen(_cmd(corpus, out, "--resume"), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while not (out / ck.METRICS).exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, train_time * 0.9))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    resumed = subprocess.run(_cmd(corpus, out, "--resume"), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert kills >= 1, "the run finished before it could be killed"
    raw_a, a = _final_weights(tmp_path / "straight")
    raw_b, b = _final_weights(out)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill/resume (kill seed {seed})"
    assert raw_a == raw_b, f"safetensors bytes differ (kill seed {seed})"
    # the metrics file reads as if the run had never been interrupted
    rows_a, rows_b = ck.read_metrics(tmp_path / "straight"), ck.read_metrics(out)
    assert [(r["step"], r["loss"], r["tokens"]) for r in rows_a] == [(r["step"], r["loss"], r["tokens"]) for r in rows_b]

"""The training loop: LR schedule, gradient accumulation, every stage, clear errors, non-finite loss.

The runs use the smoke profile's model on a small synthetic corpus written into a temporary
folder (tokenizer included), so they do not depend on the bundled sample corpus.
"""
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minimind_core.train import NonFiniteLossError, TrainError, lr_at, train

NAMES = ["Mira", "Tomas", "Lena", "Oskar", "Ada", "Rui", "Nina", "Ivo", "Sara", "Paul", "Yuki", "Omar"]
CITIES = ["Selstead", "Varn", "Kelmouth", "Orrin", "Tessaly", "Brisk"]
JOBS = ["baker", "teacher", "pilot", "doctor", "farmer", "painter"]


def make_corpus(root: Path, seed: int = 0) -> dict:
    """A tiny bilingual-free fact world: pretrain text, SFT chats, DPO pairs and a tokenizer."""
    from minimind_core.tokenizer import train_tokenizer

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    facts = {n: (CITIES[i % len(CITIES)], JOBS[(i * 5) % len(JOBS)]) for i, n in enumerate(NAMES)}
    texts = []
    for _ in range(12):
        for n, (c, j) in facts.items():
            s = [f"{n} lives in {c}.", f"{n} works as a {j}.", f"The {j} {n} likes {c}."]
            rng.shuffle(s)
            texts.append(" ".join(s))
    chats, pairs = [], []
    for n, (c, j) in facts.items():
        chats.append([{"role": "user", "content": f"Where does {n} live?"},
                      {"role": "assistant", "content": f"{n} lives in {c}."}])
        chats.append([{"role": "user", "content": f"What is {n}'s job?"},
                      {"role": "assistant", "content": f"{n} works as a {j}."}])
        wrong = CITIES[(CITIES.index(c) + 1) % len(CITIES)]
        pairs.append({"chosen": chats[-2], "rejected": [chats[-2][0], {"role": "assistant",
                                                                        "content": f"{n} lives in {wrong}."}]})
    files = {"pretrain": root / "pretrain.jsonl", "sft": root / "sft.jsonl", "dpo": root / "dpo.jsonl"}
    files["pretrain"].write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    files["sft"].write_text("".join(json.dumps({"conversations": c}) + "\n" for c in chats), encoding="utf-8")
    files["dpo"].write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    all_text = texts + [m["content"] for c in chats for m in c] + ["user assistant system"]
    train_tokenizer(all_text, 400, root / "tokenizer")
    files["tokenizer"] = root / "tokenizer"
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def run(stage, corpus, out, **kw):
    """A quiet smoke-profile run on the synthetic corpus."""
    data = corpus["pretrain"] if stage == "pretrain" else corpus["dpo"] if stage == "dpo" else corpus["sft"]
    kw.setdefault("progress", False)
    kw.setdefault("threads", 1)  # a width-64 model gains nothing from a second thread, and loses a lot on a busy machine
    kw.setdefault("seq_len", 64)
    kw.setdefault("cache_dir", corpus["pretrain"].parent / "cache")
    if stage == "pretrain":
        kw.setdefault("tokenizer", corpus["tokenizer"])
    return train(stage, profile="smoke", data=data, out=out, **kw)


def first_last(result):
    losses = [r["loss"] for r in result.metrics]
    return losses[0], losses[-1]


# ----------------------------------------------------------------------------------------------


def test_lr_schedule_values():
    # MiniMind: lr * (0.1 + 0.45 * (1 + cos(pi t / T)))
    assert lr_at(0, 100, 5e-4) == pytest.approx(5e-4)
    assert lr_at(50, 100, 5e-4) == pytest.approx(5e-4 * 0.55)
    assert lr_at(100, 100, 5e-4) == pytest.approx(5e-5)
    assert lr_at(25, 100, 1.0) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    vals = [lr_at(t, 100, 1.0) for t in range(100)]
    assert all(a > b for a, b in zip(vals, vals[1:]))
    assert vals[-1] > 0.1
    # warmup: linear ramp to the peak, then the cosine over the remaining steps
    assert [lr_at(t, 20, 1.0, warmup=4) for t in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_at(4, 20, 1.0, warmup=4) == pytest.approx(1.0)
    assert lr_at(12, 20, 1.0, warmup=4) == pytest.approx(0.55)
    with pytest.raises(ValueError):
        lr_at(0, 0, 1.0)


def _weights(checkpoint):
    from safetensors.torch import load_file

    return load_file(str(Path(checkpoint) / "model.safetensors"))


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_accumulation_equals_larger_batch(stage, corpus, tmp_path):
    init, base = {}, None
    if stage == "sft":  # variable target counts per micro-batch: the token-weighted mean must still match
        base = run("pretrain", corpus, tmp_path / "base", max_steps=2)
        init = dict(init=base.run_dir, mix_pretrain=False)
    a = run(stage, corpus, tmp_path / "a", batch_size=8, accum=1, max_steps=3, lr=1e-2, **init)
    b = run(stage, corpus, tmp_path / "b", batch_size=4, accum=2, max_steps=3, lr=1e-2, **init)
    c = run(stage, corpus, tmp_path / "c", batch_size=2, accum=4, max_steps=3, lr=1e-2, **init)
    wa, wb, wc = _weights(a.checkpoint), _weights(b.checkpoint), _weights(c.checkpoint)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-3, atol=1e-4)  # Adam magnifies float-order noise of tiny gradients
        torch.testing.assert_close(wc[k], wa[k], rtol=1e-3, atol=1e-4)  # Adam magnifies float-order noise of tiny gradients
    assert b.final_loss == pytest.approx(a.final_loss, rel=1e-4)
    # and the weights did move
    if base is not None:
        w0 = _weights(base.checkpoint)
        assert any(not torch.equal(w0[k], wa[k]) for k in wa)


def test_all_stages_learn_in_smoke_profile(corpus, tmp_path):
    seen = []
    pre = run("pretrain", corpus, tmp_path / "pretrain", callbacks=[seen.append], max_steps=40, log_every=5)
    f, l = first_last(pre)
    assert l < f - 1.0, (f, l)
    assert [r["step"] for r in seen] == [r["step"] for r in pre.metrics] == list(range(5, 45, 5))
    assert pre.tokens_seen == 40 * 8 * 64
    assert pre.checkpoint.name == "step_000040"
    rows = [json.loads(x) for x in (pre.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows == pre.metrics
    assert set(rows[0]) >= {"step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"}

    sft = run("sft", corpus, tmp_path / "sft", init=pre.run_dir, mix_pretrain=str(corpus["pretrain"]),
              mix_batch_size=4, max_steps=30, log_every=5, lr=3e-3)
    f, l = first_last(sft)
    assert l < f * 0.7, (f, l)
    assert "pretrain_loss" in sft.metrics[0]
    # the SFT run saved the tokenizer beside the model
    assert (sft.checkpoint / "tokenizer.json").is_file()

    lora = run("lora", corpus, tmp_path / "lora", init=pre.run_dir, max_steps=30, log_every=5, lr=1e-2)
    f, l = first_last(lora)
    assert l < f - 0.25, (f, l)
    assert (lora.checkpoint / "adapter.safetensors").is_file()
    assert not (lora.checkpoint / "model.safetensors").exists()
    from minimind_core.checkpoint import load_model

    m = load_model(lora.run_dir)
    assert any("lora_A" in n for n, _ in m.named_parameters())

    dpo = run("dpo", corpus, tmp_path / "dpo", init=sft.run_dir, max_steps=32, log_every=4, lr=5e-4,
              batch_size=12, dpo_score="sum", dpo_beta=0.5, dpo_sft_weight=0.0)   # plain DPO
    f, l = first_last(dpo)
    assert f == pytest.approx(math.log(2), abs=0.05)  # the policy starts as the reference
    assert l < 0.5, (f, l)
    assert dpo.metrics[-1]["reward_margin"] > 0.3

    dist = run("distill", corpus, tmp_path / "distill", teacher=sft.run_dir, max_steps=30, log_every=5, lr=5e-3)
    f, l = first_last(dist)
    assert l < f - 0.5, (f, l)  # the student starts as the teacher's first layer: far below a fresh model
    student = load_model(dist.run_dir)
    assert student.config.num_hidden_layers == 1  # the smoke recipe's smaller student


def test_existing_run_needs_resume_or_overwrite(corpus, tmp_path):
    run("pretrain", corpus, tmp_path / "r", max_steps=2)
    with pytest.raises(TrainError, match="--resume"):
        run("pretrain", corpus, tmp_path / "r", max_steps=2)
    again = run("pretrain", corpus, tmp_path / "r", max_steps=3, overwrite=True)
    assert [p.name for p in (tmp_path / "r" / "checkpoints").iterdir()] == ["step_000003"]
    assert again.steps == 3


def test_bad_init_and_vocab_mismatch(corpus, tmp_path):
    with pytest.raises(TrainError, match="no such folder"):
        run("sft", corpus, tmp_path / "x", init=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainError, match="not a model folder"):
        run("sft", corpus, tmp_path / "x", init=tmp_path / "empty")
    # a tokenizer larger than the model's vocabulary (394 tokens, vocab_size 300)
    from minimind_core import MiniMindConfig, MiniMindForCausalLM
    from minimind_core.tokenizer import train_tokenizer

    MiniMindForCausalLM(MiniMindConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       num_key_value_heads=1, vocab_size=300)).save_pretrained(str(tmp_path / "small"))
    with pytest.raises(TrainError, match="has vocab_size 300"):
        run("sft", corpus, tmp_path / "y", init=tmp_path / "small", tokenizer=corpus["tokenizer"], max_steps=1)
    # a tokenizer that differs from the one the --init model was trained with
    pre = run("pretrain", corpus, tmp_path / "p", max_steps=1)
    texts = [f"word{i} token{i * 7} piece{i * 13}" for i in range(500)]
    train_tokenizer(texts, 500, tmp_path / "othertok")
    with pytest.raises(TrainError, match="vocabulary mismatch"):
        run("sft", corpus, tmp_path / "z", init=pre.run_dir, tokenizer=tmp_path / "othertok")


def test_cli_bad_init_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minimind_core", "train", "sft", "--profile", "smoke",
                           "--init", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--threads", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("error: --init") and "no such folder" in proc.stderr


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(corpus, tmp_path):
    # an absurd learning rate blows the weights up after the first update; the next loss is not finite
    with pytest.raises(NonFiniteLossError, match="step 2") as e:
        run("pretrain", corpus, tmp_path / "nan", max_steps=10, save_every=1, log_every=1, lr=1e30)
    assert "step_000001" in str(e.value) and "--lr" in str(e.value)
    from minimind_core.checkpoint import latest_checkpoint, load_model, read_metrics

    last = latest_checkpoint(tmp_path / "nan")
    assert last.name == "step_000001"
    m = load_model(last)
    assert all(torch.isfinite(p).all() for p in m.parameters())
    assert [r["step"] for r in read_metrics(tmp_path / "nan")] == [1]


# ----------------------------------------------------------------------------------------------
# options, the run plan, and what tasks return


def test_unknown_option_is_rejected_with_the_valid_names(corpus, tmp_path):
    from minimind_core.train import resolve_config
    from minimind_core.train.config import OVERRIDE_NAMES

    # the knobs' old short names are ambiguous (alpha: LoRA or distillation?) and no longer accepted
    for old in ("rank", "alpha", "beta", "score", "temperature", "targets", "extra"):
        with pytest.raises(TrainError) as e:
            resolve_config("lora", "smoke", **{old: 1})
        msg = str(e.value)
        assert f"unknown option(s) {old};" in msg
        assert "valid options: " in msg and "lora_alpha" in msg and "distill_temperature" in msg and "max_steps" in msg
        assert "\n" not in msg
    with pytest.raises(TrainError, match="unknown option"):
        run("pretrain", corpus, tmp_path / "x", max_step=3)   # a typo stops the run before it starts
    assert not (tmp_path / "x").exists()
    assert {"lora_rank", "lora_alpha", "lora_targets", "dpo_beta", "dpo_score", "distill_alpha",
            "distill_temperature", "teacher", "student", "mix_pretrain", "mix_batch_size"} <= set(OVERRIDE_NAMES)


def test_knob_overrides_land_in_their_stage_knobs():
    from minimind_core.train import DistillKnobs, resolve_config

    cfg = resolve_config("lora", "smoke", lora_rank=4, lora_alpha=2.0, lora_targets="minimind")
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.lora.targets) == (4, 2.0, "minimind")
    assert (cfg.seed, cfg.keep, cfg.dtype) == (1337, 2, "auto")   # run options keep their defaults
    cfg = resolve_config("dpo", "smoke", dpo_beta=0.3, dpo_score="sum")
    assert (cfg.dpo.beta, cfg.dpo.score) == (0.3, "sum")
    cfg = resolve_config("distill", "smoke", distill_alpha=0.2)
    assert (cfg.distill.alpha, cfg.distill.temperature) == (0.2, DistillKnobs().temperature) == (0.2, 1.5)
    assert cfg.distill.teacher.endswith(str(Path("smoke") / "sft"))   # the recipe's teacher stage, as a folder
    with pytest.raises(TrainError, match="dpo_score must be 'mean' or 'sum'"):
        resolve_config("dpo", "smoke", dpo_score="max")
    with pytest.raises(TrainError, match="distill_temperature must be positive"):
        resolve_config("distill", "smoke", distill_temperature=0)
    # the tiny SFT recipe mixes in pretraining batches: True becomes the profile's file and batch size
    cfg = resolve_config("sft", "tiny")
    from minimind_core.profiles import get_profile

    pre = get_profile("tiny").stage("pretrain")
    assert (cfg.sft.mix_pretrain, cfg.sft.mix_batch_size) == (pre.data, pre.batch_size)
    assert resolve_config("sft", "tiny", mix_pretrain=False).sft.mix_pretrain is False


def test_recipes_are_keyword_only():
    from minimind_core.profiles import StageRecipe

    with pytest.raises(TypeError):
        StageRecipe(Path("x.jsonl"), 1, 8, 1, 1e-3, 128)


@pytest.mark.parametrize("stage, kw", [
    ("pretrain", dict(epochs=1, batch_size=8, accum=2)),
    # 24 conversations in batches of 5: 4 whole batches per epoch (the last, partial one is dropped)
    ("sft", dict(epochs=1, batch_size=5, accum=1, mix_pretrain=False)),
])
def test_plan_run_is_what_train_runs(stage, kw, corpus, tmp_path):
    from minimind_core.train import plan_run

    init = {} if stage == "pretrain" else dict(init=run("pretrain", corpus, tmp_path / "base", max_steps=1).run_dir)
    data = corpus["pretrain"] if stage == "pretrain" else corpus["sft"]
    tok = dict(tokenizer=corpus["tokenizer"]) if stage == "pretrain" else {}
    plan = plan_run(stage, "smoke", data=data, out=tmp_path / "r", seq_len=64,
                    cache_dir=corpus["pretrain"].parent / "cache", **tok, **init, **kw)
    result = run(stage, corpus, tmp_path / "r", log_every=1, **init, **kw)
    assert result.plan == plan
    assert result.steps == plan.total_steps == len(result.metrics)
    assert plan.micro_batches == kw["accum"] and plan.world == 1
    assert plan.sequences_per_step == kw["batch_size"] * kw["accum"]
    assert plan.tokens_per_step == plan.sequences_per_step * 64
    if stage == "pretrain":
        assert plan.total_steps == plan.batches_per_epoch // 2
        assert result.tokens_seen == plan.total_steps * plan.tokens_per_step   # packed: every position is a token
    else:
        assert plan.batches_per_epoch == 24 // 5 == plan.total_steps
    assert result.metrics[-1]["epoch"] == pytest.approx(plan.total_steps * kw["accum"] / plan.batches_per_epoch)


def test_tasks_return_their_loss_sums_and_metrics(corpus, tmp_path):
    from minimind_core.train.batches import open_stream
    from minimind_core.train.env import Env
    from minimind_core.train.plan import resolve_config
    from minimind_core.train.tasks import DPOTask, Forward, load_run_tokenizer

    pre = run("pretrain", corpus, tmp_path / "p", max_steps=1)
    cfg = resolve_config("dpo", "smoke", data=corpus["dpo"], init=pre.run_dir, out=tmp_path / "d", seq_len=64,
                         batch_size=4, progress=False, dpo_sft_weight=0.0)
    task = DPOTask(cfg, Env(device=torch.device("cpu")), load_run_tokenizer(cfg))
    model = task.build_model(None)
    batch = open_stream(task.sources()["main"], cfg, task.env).next()
    state_before = dict(vars(task))
    out = task.forward(model, {"main": batch})
    assert isinstance(out, Forward)
    assert set(out.sums) == {"dpo"} and set(out.metrics) == {"reward_accuracy", "reward_margin"}
    # the policy starts as the reference: every pair's reward margin is 0, the loss ln 2 per pair
    assert out.metrics == {"reward_accuracy": 0.0, "reward_margin": 0.0}
    assert out.sums["dpo"].item() == pytest.approx(4 * math.log(2), rel=1e-5)
    assert vars(task) == state_before   # nothing is passed back through the task's attributes

    # and the loop logs them: one reward accuracy per row, a fraction of the batch's pairs
    dpo = run("dpo", corpus, tmp_path / "dpo", init=pre.run_dir, max_steps=3, log_every=1, batch_size=4)
    assert [r["reward_accuracy"] * 4 % 1 for r in dpo.metrics] == [0.0, 0.0, 0.0]
    assert all(0.0 <= r["reward_accuracy"] <= 1.0 and "reward_margin" in r for r in dpo.metrics)


def test_dpo_sft_weight_adds_the_chosen_replies_cross_entropy(corpus, tmp_path):
    from minimind_core.losses import token_ce_sum
    from minimind_core.train.batches import open_stream
    from minimind_core.train.env import Env
    from minimind_core.train.plan import resolve_config
    from minimind_core.train.tasks import DPOTask, load_run_tokenizer

    pre = run("pretrain", corpus, tmp_path / "p", max_steps=1)
    cfg = resolve_config("dpo", "smoke", data=corpus["dpo"], init=pre.run_dir, out=tmp_path / "d", seq_len=64,
                         batch_size=4, progress=False, dpo_sft_weight=0.5)
    task = DPOTask(cfg, Env(device=torch.device("cpu")), load_run_tokenizer(cfg))
    assert task.components == {"dpo": 1.0, "chosen_ce": 0.5} and task.primary == "dpo"
    model = task.build_model(None)
    batch = open_stream(task.sources()["main"], cfg, task.env).next()
    out = task.forward(model, {"main": batch})
    with torch.no_grad():
        expected = token_ce_sum(model(input_ids=batch["chosen_input_ids"]).logits, batch["chosen_labels"])
    assert out.sums["chosen_ce"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert task.counts({"main": batch})["chosen_ce"] == int((batch["chosen_labels"][:, 1:] != -100).sum())
    dpo = run("dpo", corpus, tmp_path / "dpo", init=pre.run_dir, max_steps=2, log_every=1, batch_size=4,
              dpo_sft_weight=0.5)
    assert all({"dpo_loss", "chosen_ce_loss"} <= set(r) and r["loss"] == r["dpo_loss"] for r in dpo.metrics)
    with pytest.raises(TrainError, match="dpo_sft_weight must be >= 0"):
        resolve_config("dpo", "smoke", dpo_sft_weight=-1.0)


def test_mixture_of_experts_trains_its_balance_loss(corpus, tmp_path):
    """An MoE model's router balance loss is part of the objective (logged as aux_loss); "loss"
    stays the cross-entropy, and the gradient reaches the router."""
    import dataclasses

    from minimind_core.profiles import get_profile

    smoke = get_profile("smoke")
    moe = dataclasses.replace(smoke, model={**smoke.model, "use_moe": True, "n_routed_experts": 4,
                                            "num_experts_per_tok": 2, "n_shared_experts": 1})
    res = train("pretrain", profile=moe, data=corpus["pretrain"], out=tmp_path / "moe", progress=False,
                threads=1, seq_len=64, cache_dir=corpus["pretrain"].parent / "cache",
                tokenizer=corpus["tokenizer"], max_steps=6, log_every=3)
    rows = res.metrics
    assert all("aux_loss" in r and "ce_loss" in r for r in rows)
    assert all(r["loss"] == r["ce_loss"] for r in rows)
    # a balanced top-2-of-4 router scores alpha * sum_e(load_e * mean score_e) = 0.1 * 1 per layer
    assert all(0.05 < r["aux_loss"] < 1.0 for r in rows), rows

    # the balance loss alone moves the router: its gradient is not zero
    from minimind_core.checkpoint import load_model

    model = load_model(res.run_dir).train()
    ids = torch.randint(3, 300, (2, 32))
    model(input_ids=ids).aux_loss.backward()
    gate = model.model.layers[0].mlp.gate.weight
    assert gate.grad is not None and gate.grad.abs().sum() > 0

    # a dense run logs no aux component
    dense = run("pretrain", corpus, tmp_path / "dense", max_steps=3, log_every=3)
    assert "aux_loss" not in dense.metrics[0]


# ----------------------------------------------------------------------------------------------
# validation loss


def _heldout_loss(checkpoint, dataset, batch_size):
    """The mean next-token loss of a saved model over `dataset`, computed without the loop."""
    import torch.nn.functional as F

    from minimind_core.checkpoint import load_model

    model = load_model(checkpoint).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(dataset), batch_size):
            ids = torch.stack([dataset[j]["input_ids"] for j in range(i, min(i + batch_size, len(dataset)))])
            logits = model(input_ids=ids).logits
            total += F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                     reduction="sum").item()
            count += ids[:, 1:].numel()
    return total / count


def test_holdout_split_takes_every_kth_example_and_is_disjoint():
    from minimind_core.train.tasks import holdout_split

    data = list(range(100))
    train_part, val_part = holdout_split(data, 0.1)
    assert list(val_part) == list(range(9, 100, 10))
    assert set(train_part) | set(val_part) == set(data) and not set(train_part) & set(val_part)
    assert holdout_split(data, 0.0) == (data, None)
    assert holdout_split(data[:1], 0.5)[1] is None   # nothing to hold out from a single example


def test_val_loss_is_logged_and_measured_on_the_held_out_blocks(corpus, tmp_path):
    from minimind_core.checkpoint import read_metrics
    from minimind_core.datasets import PackedDataset, build_token_cache
    from minimind_core.tokenizer import load_tokenizer
    from minimind_core.train.tasks import holdout_split

    result = run("pretrain", corpus, tmp_path / "r", max_steps=8, log_every=2, val_fraction=0.1, val_every=2,
                 val_batches=100)
    rows = read_metrics(tmp_path / "r")
    # the first row, every second row after it and the last: steps 2, 4, 8 (not 6)
    assert [r["step"] for r in rows if "val_loss" in r] == [2, 4, 8]
    assert [r.get("val_loss") for r in rows] == [r.get("val_loss") for r in result.metrics]
    cache = build_token_cache(corpus["pretrain"], load_tokenizer(corpus["tokenizer"]),
                              cache_dir=corpus["pretrain"].parent / "cache", progress=False)
    full = PackedDataset(cache, 64)
    train_part, val_part = holdout_split(full, 0.1)
    assert result.plan.batches_per_epoch == len(train_part) // 8 < len(full) // 8   # never trained on
    assert rows[-1]["val_loss"] == pytest.approx(_heldout_loss(result.checkpoint, val_part, 8), rel=1e-5)
    assert rows[0]["val_loss"] > rows[-1]["val_loss"]   # it learnt something that carries over


def test_validation_does_not_change_training(corpus, tmp_path):
    often = run("pretrain", corpus, tmp_path / "a", max_steps=6, log_every=1, val_fraction=0.1, val_every=1)
    rarely = run("pretrain", corpus, tmp_path / "b", max_steps=6, log_every=1, val_fraction=0.1, val_every=100)
    assert sum("val_loss" in r for r in often.metrics) == 6
    assert sum("val_loss" in r for r in rarely.metrics) == 2   # first and last
    assert [r["loss"] for r in often.metrics] == [r["loss"] for r in rarely.metrics]
    wa, wb = _weights(often.checkpoint), _weights(rarely.checkpoint)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sft_logs_val_loss_and_bad_val_options_are_named(corpus, tmp_path, capsys):
    pre = run("pretrain", corpus, tmp_path / "p", max_steps=1)
    sft = run("sft", corpus, tmp_path / "s", init=pre.run_dir, max_steps=2, log_every=1, batch_size=4,
              val_fraction=0.25, mix_pretrain=False)
    assert all(r["val_loss"] > 0 for r in sft.metrics)
    assert "val_loss:" in capsys.readouterr().out   # MiniMind's log line carries it
    no_val = run("pretrain", corpus, tmp_path / "n", max_steps=2, log_every=1, val_fraction=0)
    assert not any("val_loss" in r for r in no_val.metrics)
    with pytest.raises(TrainError, match="--val-fraction must be between 0 and 0.5, got 0.9"):
        run("pretrain", corpus, tmp_path / "x", val_fraction=0.9)
    with pytest.raises(TrainError, match="--val-every must be at least 1"):
        run("pretrain", corpus, tmp_path / "x", val_every=0)


def test_a_hand_written_loop_matches_train(corpus, tmp_path):
    """Lesson 04's loop: the same seed, weights, batches and schedule give train()'s losses exactly."""
    from minimind_core.checks.lesson04 import reference_training_step
    from minimind_core.datasets import PackedDataset, build_token_cache
    from minimind_core.model import MiniMindForCausalLM
    from minimind_core.profiles import get_profile
    from minimind_core.tokenizer import load_tokenizer
    from minimind_core.train.batches import BatchStream
    from minimind_core.train.tasks import holdout_split

    steps, lr, seed = 12, 3e-3, 7
    result = run("pretrain", corpus, tmp_path / "r", max_steps=steps, log_every=1, lr=lr, warmup=3, seed=seed,
                 val_fraction=0.1)
    cache = build_token_cache(corpus["pretrain"], load_tokenizer(corpus["tokenizer"]),
                              cache_dir=corpus["pretrain"].parent / "cache", progress=False)
    train_part, _ = holdout_split(PackedDataset(cache, 64), 0.1)
    stream = BatchStream(train_part, 8, seed=seed)
    torch.manual_seed(seed)
    model = MiniMindForCausalLM(get_profile("smoke").model_config())
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    hand = [reference_training_step(model, opt, stream.next(), lr_at(s, steps, lr, 3)) for s in range(steps)]
    assert [h[0] for h in hand] == pytest.approx([r["loss"] for r in result.metrics], rel=1e-5)
    assert [h[1] for h in hand] == pytest.approx([r["grad_norm"] for r in result.metrics], rel=1e-4)
    saved = _weights(result.checkpoint)
    for name, p in model.state_dict().items():
        if name in saved:
            torch.testing.assert_close(p, saved[name], rtol=1e-4, atol=1e-5)

"""GRPO: prompts with checkable answers, the verifiable reward, the loss pieces, rollouts, and the
`grpo` stage (its loop, resume, the command line and two gloo ranks under torchrun)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_train import CITIES, NAMES, make_corpus, run  # noqa: E402

from minimind_core import grpo  # noqa: E402
from minimind_core.errors import DataError  # noqa: E402
from minimind_core.train import train  # noqa: E402

# ----------------------------------------------------------------------------------------------
# prompts


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in records), encoding="utf-8")
    return path


def test_read_prompts_takes_eval_qa_records_and_gt_records(tmp_path):
    p = _write(tmp_path / "p.jsonl", [
        {"conversations": [{"role": "user", "content": "Where does Mira live?"},
                           {"role": "assistant", "content": "She lives in Varn."}],
         "expected": "Varn", "choices": CITIES, "kind": "city", "lang": "en"},
        {"conversations": [{"role": "system", "content": "You can use tools."},
                           {"role": "user", "content": "What is 12 * 7?"}], "gt": [84]},
        {"conversations": [{"role": "user", "content": "Write a poem."}, {"role": "assistant", "content": ""}]},
        "",
    ])
    recs = grpo.read_prompts(p)
    assert len(recs) == 2                       # the open prompt has nothing to check: skipped
    assert recs[0].messages == ({"role": "user", "content": "Where does Mira live?"},)   # the reference is dropped
    assert (recs[0].expected, recs[0].kind) == ("Varn", "city")
    assert recs[1].gt == ("84",) and [m["role"] for m in recs[1].messages] == ["system", "user"]


def test_a_file_without_checkable_answers_says_why(tmp_path):
    p = _write(tmp_path / "rlaif.jsonl", [{"conversations": [{"role": "user", "content": "Hi"},
                                                              {"role": "assistant", "content": "Hello"}]}] * 3)
    with pytest.raises(DataError, match="no prompt with a checkable answer .3 record.* reward model"):
        grpo.read_prompts(p)


@pytest.mark.parametrize("line, where", [
    ('{"conversations": [{"role": "user", "content": "Q"}], "expected": ""}', 'field "expected"'),
    ('{"conversations": "Q", "gt": [1]}', 'field "conversations"'),
    ('{"conversations": [{"role": "user"}], "gt": [1]}', 'field "conversations"[0]'),
    ('{"conversations": [{"role": "user", "content": "Q"}], "gt": ["", "3"]}', 'field "gt"'),
    ('{"conversations": [{"role": "system", "content": "S"}], "gt": [1]}', "no user message"),
    ("{not json", "not a JSON object"),
])
def test_bad_prompt_lines_name_the_file_line_and_field(tmp_path, line, where):
    good = json.dumps({"conversations": [{"role": "user", "content": "Q"}], "gt": ["1"]})
    p = _write(tmp_path / "bad.jsonl", [good, line])
    with pytest.raises(DataError) as e:
        grpo.read_prompts(p)
    assert str(e.value).startswith(f"{p}:2: ") and where in str(e.value)


# ----------------------------------------------------------------------------------------------
# the reward


def test_reward_is_right_fact_and_no_wrong_one_minus_format():
    rec = grpo.PromptRecord(messages=(), expected="Varn", choices=tuple(CITIES))
    assert grpo.reward("She lives in Varn.", True, rec) == 1.0
    assert grpo.reward("She lives in Varn or Orrin.", True, rec) == 0.0
    assert grpo.reward("She lives in Orrin.", True, rec) == 0.0
    assert grpo.reward("she lives in varn", False, rec) == 0.5
    assert grpo.reward("", False, rec, format_weight=0.25) == -0.25


def test_gt_answers_compare_numbers_as_numbers():
    rec = grpo.PromptRecord(messages=(), gt=("84", "1,200"))
    assert grpo.answer_correct("12 * 7 = 84.0 and the total is 1200", rec)
    assert not grpo.answer_correct("12 * 7 = 184 and the total is 1200", rec)   # 184 is not 84
    assert not grpo.answer_correct("84", rec)                                  # every value must appear
    assert grpo.gt_found("The capital is Paris.", "paris")


# ----------------------------------------------------------------------------------------------
# the loss pieces


def test_group_advantages_compare_each_reply_with_its_own_group():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    a = grpo.group_advantages(r, 4)
    assert torch.allclose(a[:4], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-3)
    assert torch.equal(a[4:], torch.zeros(4))          # all equal: nothing to learn, and no NaN
    assert torch.allclose(grpo.group_advantages(r * 10 + 3, 4)[:4], a[:4], atol=1e-3)   # scale-free
    with pytest.raises(ValueError, match="G = 3"):
        grpo.group_advantages(r, 3)


def test_k3_is_zero_at_the_reference_never_negative_and_unbiased():
    logp = -torch.rand(50) * 4
    assert torch.equal(grpo.k3_kl(logp, logp), torch.zeros(50))
    assert (grpo.k3_kl(logp, -torch.rand(50) * 4) >= 0).all()
    # E_{x ~ p}[k3] = KL(p || q) for two categorical distributions
    g = torch.Generator().manual_seed(0)
    p, q = torch.softmax(torch.randn(6, generator=g), 0), torch.softmax(torch.randn(6, generator=g), 0)
    exact = float((p * (p.log() - q.log())).sum())
    expected_k3 = float((p * grpo.k3_kl(p.log(), q.log())).sum())
    assert expected_k3 == pytest.approx(exact, rel=1e-5)


def test_at_ratio_one_the_surrogate_gradient_is_the_policy_gradient():
    old = -torch.rand(3, 4)
    logp = old.clone().requires_grad_(True)
    adv = torch.tensor([1.0, -2.0, 0.5])
    obj, clipped = grpo.clipped_surrogate(logp, old, adv, 0.2)
    (g,) = torch.autograd.grad(obj.sum(), logp)
    assert torch.allclose(g, adv[:, None].expand(3, 4)) and not clipped.any()
    # once the ratio left [0.8, 1.2] in the advantage's direction the token gets no gradient
    moved = (old + torch.tensor([0.5, -0.5, 0.0])[:, None]).requires_grad_(True)
    obj, clipped = grpo.clipped_surrogate(moved, old, adv, 0.2)
    (g,) = torch.autograd.grad(obj.sum(), moved)
    assert clipped[0].all() and clipped[1].all() and not clipped[2].any()
    assert torch.equal(g[:2], torch.zeros(2, 4))


def test_aggregate_sequence_weighs_replies_token_weighs_tokens():
    v = torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    assert float(grpo.aggregate(v, mask, "sequence")) == pytest.approx((1.0 + 4.0) / 2)
    assert float(grpo.aggregate(v, mask, "token")) == pytest.approx(8.0 / 5)
    with pytest.raises(ValueError, match="'sequence' or 'token'"):
        grpo.aggregate(v, mask, "mean")


def test_pack_replies_labels_only_the_reply():
    ids, labels = grpo.pack_replies([[1, 5, 6], [1, 7]], [[9, 2], [8], [4, 4, 4], [2]], group_size=2)
    assert ids.tolist() == [[1, 5, 6, 9, 2], [1, 5, 6, 8, 0], [1, 7, 4, 4, 4], [1, 7, 2, 0, 0]]
    assert labels.tolist() == [[-100, -100, -100, 9, 2], [-100, -100, -100, 8, -100],
                               [-100, -100, 4, 4, 4], [-100, -100, 2, -100, -100]]


# ----------------------------------------------------------------------------------------------
# the stage


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The synthetic corpus, an SFT model trained on it, and a prompts file about its facts."""
    root = tmp_path_factory.mktemp("grpo")
    corpus = make_corpus(root / "corpus")
    pre = run("pretrain", corpus, root / "pre", max_steps=40)
    sft = run("sft", corpus, root / "sft", init=pre.run_dir, mix_pretrain=False, max_steps=30, lr=3e-3)
    prompts = _write(root / "prompts.jsonl", [
        {"conversations": [{"role": "user", "content": f"Where does {n} live?"}],
         "expected": CITIES[i % len(CITIES)], "choices": CITIES} for i, n in enumerate(NAMES)])
    return {"corpus": corpus, "sft": sft.run_dir, "prompts": prompts}


def grpo_run(world, out, **kw):
    kw.setdefault("max_steps", 4)
    kw.setdefault("batch_size", 3)
    kw.setdefault("grpo_group_size", 4)
    kw.setdefault("grpo_max_new_tokens", 12)
    return train("grpo", profile="smoke", data=world["prompts"], init=world["sft"], out=out, progress=False,
                 threads=1, log_every=1, lr=1e-3, **kw)


def test_sample_rollout_lays_out_groups_with_their_rewards(world):
    from minimind_core.checkpoint import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(world["sft"], device="cpu")
    ds = grpo.PromptDataset(world["prompts"], tok)
    b = grpo.collate_prompts([ds[0], ds[1]])
    torch.manual_seed(0)
    r = grpo.sample_rollout(model, tok, b["prompt_ids"], b["records"], group_size=3, max_new_tokens=10)
    assert r.input_ids.shape[0] == 6 == len(r.replies) == r.rewards.numel()
    for i in range(6):
        prompt = b["prompt_ids"][i // 3]
        assert r.input_ids[i, :len(prompt)].tolist() == prompt
        labelled = r.labels[i][r.labels[i] != -100].tolist()
        assert labelled == r.input_ids[i, len(prompt):len(prompt) + len(labelled)].tolist()
        assert bool(r.closed[i]) == (labelled[-1] == 2) and (bool(r.closed[i]) or len(labelled) == 10)
        assert r.rewards[i] == grpo.reward(r.replies[i], bool(r.closed[i]), b["records"][i // 3])


def test_grpo_stage_logs_rewards_and_kl_and_starts_at_the_reference(world, tmp_path):
    res = grpo_run(world, tmp_path / "g")
    rows = res.metrics
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in ("reward", "sample_accuracy", "in_format", "kl", "clip_fraction", "reply_tokens", "groups_learning"):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)     # the first rollout's policy is the reference
    assert rows[-1]["kl"] > 0                                 # ... and then it moves away
    assert all(r["clip_fraction"] == 0.0 for r in rows)       # one update per group: the ratio is 1
    assert (res.checkpoint / "model.safetensors").is_file()


def test_grpo_resumes_bit_for_bit(world, tmp_path):
    from safetensors.torch import load_file

    whole = grpo_run(world, tmp_path / "whole", max_steps=4)
    grpo_run(world, tmp_path / "cut", max_steps=4, save_every=2)
    # keep only the step-2 checkpoint and the first two rows, as if the run had stopped there
    from minimind_core import checkpoint as ck

    for c in (tmp_path / "cut" / "checkpoints").iterdir():
        if c.name != "step_000002":
            import shutil

            shutil.rmtree(c)
    resumed = grpo_run(world, tmp_path / "cut", max_steps=4, save_every=2, resume=True)
    a, b = load_file(str(whole.checkpoint / "model.safetensors")), load_file(str(resumed.checkpoint / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["reward"] for r in ck.read_metrics(tmp_path / "cut")] == [r["reward"] for r in whole.metrics]


def test_token_aggregation_counts_reply_tokens(world, tmp_path):
    seq = grpo_run(world, tmp_path / "s", max_steps=1)
    tok = grpo_run(world, tmp_path / "t", max_steps=1, grpo_loss_agg="token")
    assert seq.metrics[0]["reward"] == tok.metrics[0]["reward"]    # the same samples ...
    assert seq.final_loss != tok.final_loss                        # ... weighed differently


def test_bad_grpo_knobs_are_named():
    from minimind_core.train import TrainError, resolve_config

    with pytest.raises(TrainError, match="grpo_group_size must be at least 2"):
        resolve_config("grpo", "smoke", grpo_group_size=1)
    with pytest.raises(TrainError, match="grpo_loss_agg"):
        resolve_config("grpo", "smoke", grpo_loss_agg="mean")
    cfg = resolve_config("grpo", "smoke", grpo_beta=0.02, grpo_temperature=0.7)
    assert (cfg.grpo.beta, cfg.grpo.temperature, cfg.init.name) == (0.02, 0.7, "sft")


def test_cli_trains_grpo_on_two_gloo_ranks(world, tmp_path):
    args = ["train", "grpo", "--profile", "smoke", "--data", str(world["prompts"]), "--init", str(world["sft"]),
            "--out", str(tmp_path / "ddp"), "--max-steps", "2", "--batch-size", "2", "--group-size", "3",
            "--max-new-tokens", "8", "--kl-beta", "0.05", "--log-every", "1", "--no-progress", "--threads", "1"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "--max_restarts", "0", "-m", "minimind_core", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINIMIND_DIST_TIMEOUT": "60"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from minimind_core import checkpoint as ck

    info = ck.read_json(tmp_path / "ddp" / ck.RUN_INFO)
    assert info["world_size"] == 2 and info["grpo"]["beta"] == 0.05 and info["grpo"]["group_size"] == 3
    rows = ck.read_metrics(tmp_path / "ddp")
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert proc.stdout.count("Epoch:[") == 2      # rank 0 logs


def test_sample_prompts_are_the_training_half_only():
    from minimind_core import course
    from minimind_core.evaluate import load_eval_items
    from minimind_core.profiles import get_profile

    recs = grpo.read_prompts(course.grpo_prompts("smoke"))
    held_out = {it.question for it in load_eval_items(get_profile("smoke").eval_qa)}
    asked = {r.messages[0]["content"] for r in recs}
    assert len(recs) == 1020 and not asked & held_out
    assert {r.kind for r in recs} == {"city", "job", "food", "country", "river"} and {r.lang for r in recs} == {"en", "zh"}
    assert all(r.expected in r.choices for r in recs)


def test_sampled_accuracy_is_repeatable_and_greedy_in_the_limit(world):
    from minimind_core.checkpoint import load_model_and_tokenizer
    from minimind_core.evaluate import greedy_replies

    model, tok = load_model_and_tokenizer(world["sft"], device="cpu")
    recs = grpo.read_prompts(world["prompts"])
    a = grpo.sampled_accuracy(model, tok, recs, samples=3, seed=1)
    assert a == grpo.sampled_accuracy(model, tok, recs, samples=3, seed=1)
    # top-p so small that only the most likely token survives: every sample is the greedy reply
    greedy = greedy_replies(model, tok, [r.messages[0]["content"] for r in recs], max_new_tokens=32)
    right = sum(grpo.answer_correct(text, r) for (text, _), r in zip(greedy, recs)) / len(recs)
    assert grpo.sampled_accuracy(model, tok, recs, samples=2, top_p=1e-6) == pytest.approx(right)

"""Checks for lesson 05 (supervised fine-tuning, 监督微调).

    from minimind_core.checks import lesson05 as checks
    checks.check_render_chat(render_chat)                   # render_chat(messages, add_generation_prompt=False) -> str
    checks.check_sft_labels(sft_labels, tokenizer)          # sft_labels(messages, tokenizer, max_len) -> (input_ids, labels)
    checks.check_masked_cross_entropy(masked_cross_entropy) # masked_cross_entropy(logits, labels) -> scalar tensor
    checks.check_dpo_loss(dpo_loss)                         # stretch: dpo_loss(pc, pr, rc, rr, beta) -> scalar tensor

They compare with `minimind_core.chat.render_chat`, `minimind_core.datasets.encode_conversation`
(token by token), the model's own loss and `minimind_core.losses.dpo_loss`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..chat import render_chat as _render_chat
from ..losses import IGNORE_INDEX
from ..tokenizer import token_labels
from . import CheckFailed, call_learner, check, expect_equal, expect_tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _u(text):
    return {"role": "user", "content": text}


def _a(text):
    return {"role": "assistant", "content": text}


# the conversations every chat check uses: default system, own system, multi-turn, Chinese
CONVERSATIONS = [
    ("one question, no system message (the default one is added)",
     [_u("Where does Mira live?"), _a("She lives in Selstead.")]),
    ("a conversation that brings its own system message",
     [{"role": "system", "content": "Answer in one short sentence."}, _u("What is 2 + 3?"), _a("2 + 3 = 5.")]),
    ("two turns: both assistant replies are trained",
     [_u("Who are you?"), _a("I am MiniMind."), _u("What is 4 + 4?"), _a("4 + 4 = 8.")]),
    ("Chinese text", [_u("你是谁？"), _a("我是MiniMind，一个小型语言模型。")]),
]


# --------------------------------------------------------------------------------------------
# chat rendering
# --------------------------------------------------------------------------------------------

@check("chat template (ChatML)")
def check_render_chat(render_chat):
    for desc, messages in CONVERSATIONS:
        got = call_learner(render_chat, [dict(m) for m in messages])
        expected = _render_chat(messages)
        _expect_text(got, expected, desc)
    desc, messages = CONVERSATIONS[0]
    got = call_learner(render_chat, [dict(m) for m in messages[:1]], add_generation_prompt=True)
    _expect_text(got, _render_chat(messages[:1], add_generation_prompt=True),
                 "a question with add_generation_prompt=True (end with '<|im_start|>assistant\\n')")
    return f"{len(CONVERSATIONS) + 1} conversations rendered exactly like the tokenizer's chat template"


def _expect_text(got, expected: str, what: str) -> None:
    if not isinstance(got, str):
        raise CheckFailed(f"{what}: expected a str, got {type(got).__name__}")
    if got == expected:
        return
    i = next((k for k, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    lo = max(0, i - 20)
    raise CheckFailed(f"{what}: the text differs at character {i}: expected ...{expected[lo:i + 20]!r}, "
                      f"got ...{got[lo:i + 20]!r}")


# --------------------------------------------------------------------------------------------
# the SFT loss mask
# --------------------------------------------------------------------------------------------

def _as_list(x, what):
    if isinstance(x, torch.Tensor):
        if x.dim() != 1:
            raise CheckFailed(f"{what}: expected a 1-D sequence, got a tensor of shape {tuple(x.shape)}")
        return [int(v) for v in x.tolist()]
    if isinstance(x, (list, tuple)):
        return [int(v) for v in x]
    raise CheckFailed(f"{what}: expected a list or a 1-D tensor of ints, got {type(x).__name__}")


def _token_text(tokenizer, i: int) -> str:
    return token_labels(tokenizer, [i])[0]


@check("SFT loss mask")
def check_sft_labels(sft_labels, tokenizer):
    from ..datasets import encode_conversation

    cases = [(desc, messages, 512) for desc, messages in CONVERSATIONS]
    desc, messages = CONVERSATIONS[2]
    full_len = len(_as_list(encode_conversation(messages, tokenizer, 512)[0], "encode_conversation"))
    cases.append((f"the two-turn conversation cut to max_len={full_len - 6} (the end is dropped)",
                  messages, full_len - 6))
    for desc, messages, max_len in cases:
        exp_ids, exp_labels = (_as_list(t, "encode_conversation") for t in encode_conversation(messages, tokenizer, max_len))
        got = call_learner(sft_labels, [dict(m) for m in messages], tokenizer, max_len)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailed(f"{desc}: expected a pair (input_ids, labels), got {type(got).__name__}")
        ids, labels = _as_list(got[0], f"{desc}: input_ids"), _as_list(got[1], f"{desc}: labels")
        if len(labels) != len(ids):
            raise CheckFailed(f"{desc}: input_ids has {len(ids)} tokens but labels has {len(labels)}; "
                              "labels must be as long as input_ids (the model shifts them itself)")
        if ids != exp_ids:
            k = next((j for j, (a, b) in enumerate(zip(ids, exp_ids)) if a != b), min(len(ids), len(exp_ids)))
            if k == min(len(ids), len(exp_ids)):
                raise CheckFailed(f"{desc}: input_ids: expected {len(exp_ids)} tokens, got {len(ids)} "
                                  f"(the first {k} agree)")
            raise CheckFailed(f"{desc}: input_ids differ at token {k}: expected {exp_ids[k]} "
                              f"({_token_text(tokenizer, exp_ids[k])!r}), got {ids[k]} "
                              f"({_token_text(tokenizer, ids[k])!r})")
        for k, (g, e) in enumerate(zip(labels, exp_labels)):
            if g != e:
                tok = _token_text(tokenizer, ids[k])
                want = "be trained (label = the token id)" if e != IGNORE_INDEX else "not be trained (label -100)"
                raise CheckFailed(f"{desc}: token {k} ({tok!r}) should {want}: expected label {e}, got {g}")
    return f"{len(cases)} conversations agree with encode_conversation token by token"


# --------------------------------------------------------------------------------------------
# masked cross-entropy
# --------------------------------------------------------------------------------------------

def _reference_ce(logits, labels):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX)


@check("masked cross-entropy")
def check_masked_cross_entropy(masked_cross_entropy):
    g = _gen(0)
    cases = []
    logits = torch.randn(2, 9, 17, generator=g) * 2
    labels = torch.randint(0, 17, (2, 9), generator=g)
    labels[0, :4] = IGNORE_INDEX     # a prompt that is not trained
    labels[1, :6] = IGNORE_INDEX
    labels[1, -1] = IGNORE_INDEX     # padding at the end
    cases.append(("a batch of 2 with masked prompts and padding", logits, labels))
    logits2 = torch.randn(3, 6, 11, generator=g)
    labels2 = torch.full((3, 6), IGNORE_INDEX)
    labels2[0, 5] = 3
    labels2[2, 2:5] = torch.tensor([1, 7, 9])
    cases.append(("rows of very different lengths (average over tokens, not over rows)", logits2, labels2))
    logits3 = torch.randn(1, 5, 8, generator=g)
    labels3 = torch.randint(0, 8, (1, 5), generator=g)
    cases.append(("nothing masked: plain next-token cross-entropy", logits3, labels3))
    for desc, lg, lb in cases:
        got = call_learner(masked_cross_entropy, lg.clone(), lb.clone())
        if isinstance(got, torch.Tensor) and got.dim() != 0:
            raise CheckFailed(f"{desc}: expected a scalar (0-dim tensor), got shape {tuple(got.shape)}")
        expect_tensor(got, _reference_ce(lg, lb), desc, atol=1e-5, rtol=1e-5, check_dtype=False)
    return "matches the shifted, masked mean over trained tokens (the model's own loss)"


# --------------------------------------------------------------------------------------------
# stretch: DPO
# --------------------------------------------------------------------------------------------

@check("DPO loss (stretch)")
def check_dpo_loss(dpo_loss):
    from ..losses import dpo_loss as lib_dpo

    g = _gen(1)
    s = torch.randn(4, 6, generator=g) - 2.0
    pc, pr, rc, rr = s
    got = call_learner(dpo_loss, pc.clone(), pc.clone(), pc.clone(), pc.clone(), 0.1)
    expect_tensor(got, torch.tensor(math.log(2.0)),
                  "policy = reference (the start of training): the loss must be ln 2", atol=1e-6,
                  check_dtype=False)
    for desc, beta in (("random sequence scores, beta 0.1", 0.1), ("random sequence scores, beta 0.5", 0.5)):
        got = call_learner(dpo_loss, pc.clone(), pr.clone(), rc.clone(), rr.clone(), beta)
        expected, _ = lib_dpo(pc, pr, rc, rr, beta=beta)
        if isinstance(got, torch.Tensor) and got.dim() != 0:
            raise CheckFailed(f"{desc}: expected the mean over pairs (a scalar), got shape {tuple(got.shape)}")
        expect_tensor(got, expected, desc, atol=1e-6, rtol=1e-5, check_dtype=False)
    # a policy that prefers the chosen reply more than the reference does has a loss below ln 2
    got = call_learner(dpo_loss, rc + 1.0, rr - 1.0, rc.clone(), rr.clone(), 0.1)
    expect_equal(bool(float(got) < math.log(2.0)), True,
                 "policy raising the chosen and lowering the rejected reply: loss below ln 2")
    return "ln 2 at the start, and equal to minimind_core.losses.dpo_loss"


@check("DPO sequence score, mean and sum (stretch)")
def check_sequence_score(sequence_score):
    """sequence_score(logits, labels, reduction) against losses.sequence_logprobs, for both reductions."""
    from ..losses import sequence_logprobs

    g = _gen(2)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[0, :3] = -100                  # a prompt: not scored
    labels[1, :5] = -100                  # a shorter reply
    results = {}
    for mode in ("mean", "sum"):
        got = call_learner(sequence_score, logits.clone(), labels.clone(), mode)
        expected = sequence_logprobs(logits, labels, reduction=mode)
        other = sequence_logprobs(logits, labels, reduction="sum" if mode == "mean" else "mean")
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.allclose(got.float(), other, atol=1e-5):
            raise CheckFailed(f"reduction={mode!r}: you returned the {'sum' if mode == 'mean' else 'mean'}; "
                              f"{mode} over each sequence's scored tokens")
        expect_tensor(got, expected, f"reduction={mode!r} (one score per sequence, labels shifted by one, "
                      "-100 not scored)", atol=1e-5, rtol=1e-5, check_dtype=False)
        results[mode] = got
    n = (labels[:, 1:] != -100).sum(-1)
    return (f"mean and sum both match; the sum is the mean x the scored tokens ({', '.join(map(str, n.tolist()))} "
            "here), so a longer reply gets a larger |score| under the sum")


__all__ = ["CONVERSATIONS", "check_render_chat", "check_sft_labels", "check_masked_cross_entropy", "check_dpo_loss",
           "check_sequence_score"]

"""Lesson 05 checks: pass on the answers, 'not done yet' on the stubs, a readable message on wrong ones."""
import math

import pytest
import torch
import torch.nn.functional as F

from minimind_core.checks import lesson05 as checks
from minimind_core.tokenizer import train_tokenizer
from check_helpers import expect_fail as _fails, stub

DEFAULT_SYSTEM = "You are a helpful assistant"


@pytest.fixture(scope="module")
def tokenizer():
    texts = [m["content"] for _, conv in checks.CONVERSATIONS for m in conv] * 20
    texts += ["She lives in Selstead. He is a baker.", "我是一个小型语言模型。你好！", DEFAULT_SYSTEM] * 20
    return train_tokenizer(texts, 400)


# ---- reference answers, written independently of the library ---------------------------------

def render_chat(messages, add_generation_prompt=False):
    if not messages or messages[0]["role"] != "system":
        messages = [{"role": "system", "content": DEFAULT_SYSTEM}] + list(messages)
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def sft_labels(messages, tokenizer, max_len):
    if not messages or messages[0]["role"] != "system":
        messages = [{"role": "system", "content": DEFAULT_SYSTEM}] + list(messages)
    ids, labels = [], []
    for m in messages:
        head = tokenizer.encode(f"<|im_start|>{m['role']}\n", add_special_tokens=False)
        body = tokenizer.encode(f"{m['content']}<|im_end|>\n", add_special_tokens=False)
        ids += head + body
        labels += [-100] * len(head) + (body if m["role"] == "assistant" else [-100] * len(body))
    return ids[:max_len], labels[:max_len]


def masked_cross_entropy(logits, labels):
    logits, labels = logits[:, :-1], labels[:, 1:]
    keep = labels != -100
    logp = logits.float().log_softmax(-1)
    picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked * keep).sum() / keep.sum()


def dpo_loss(pc, pr, rc, rr, beta=0.1):
    return -F.logsigmoid(beta * ((pc - pr) - (rc - rr))).mean()


# ---- the tests --------------------------------------------------------------------------------

def test_checks_pass_on_answers(tokenizer):
    assert checks.check_render_chat(render_chat).passed, str(checks.check_render_chat(render_chat))
    r = checks.check_sft_labels(sft_labels, tokenizer)
    assert r.passed, str(r)
    assert checks.check_masked_cross_entropy(masked_cross_entropy).passed
    assert checks.check_dpo_loss(dpo_loss).passed


def test_checks_report_not_done_on_stubs(tokenizer):
    for r in (checks.check_render_chat(stub), checks.check_sft_labels(stub, tokenizer),
              checks.check_masked_cross_entropy(stub), checks.check_dpo_loss(stub)):
        assert not r.passed and "not done yet" in str(r)


def test_render_chat_without_default_system_fails():
    def wrong(messages, add_generation_prompt=False):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")
    r = checks.check_render_chat(wrong)
    assert not r.passed
    assert "no system message" in r.message and "differs at character 12" in r.message


def test_render_chat_without_final_newline_fails():
    r = checks.check_render_chat(lambda messages, add_generation_prompt=False:
                                 render_chat(messages, add_generation_prompt).rstrip("\n"))
    assert not r.passed and "differs at character" in r.message


def test_mask_that_trains_the_role_header_fails(tokenizer):
    def wrong(messages, tokenizer, max_len):
        if messages[0]["role"] != "system":
            messages = [{"role": "system", "content": DEFAULT_SYSTEM}] + list(messages)
        ids, labels = [], []
        for m in messages:
            head = tokenizer.encode(f"<|im_start|>{m['role']}\n", add_special_tokens=False)
            body = tokenizer.encode(f"{m['content']}<|im_end|>\n", add_special_tokens=False)
            ids += head + body
            labels += (head + body) if m["role"] == "assistant" else [-100] * (len(head) + len(body))
        return ids[:max_len], labels[:max_len]
    r = checks.check_sft_labels(wrong, tokenizer)
    assert not r.passed
    assert "should not be trained (label -100)" in r.message and "<|im_start|>" in r.message


def test_mask_without_the_closing_newline_fails(tokenizer):
    def wrong(messages, tokenizer, max_len):
        ids, labels = sft_labels(messages, tokenizer, max_len)
        for k in range(1, len(ids)):
            if ids[k - 1] == 2 and labels[k] != -100:     # the newline after <|im_end|>
                labels[k] = -100
        return ids, labels
    r = checks.check_sft_labels(wrong, tokenizer)
    assert not r.passed
    assert "should be trained" in r.message and "↵" in r.message


def test_mask_of_the_last_turn_only_fails(tokenizer):
    def wrong(messages, tokenizer, max_len):
        ids, labels = sft_labels(messages, tokenizer, max_len)
        ends = [k for k in range(len(ids)) if ids[k] == 2 and labels[k] != -100]
        if len(ends) > 1:
            labels[: ends[-2] + 2] = [-100] * (ends[-2] + 2)
        return ids, labels
    r = checks.check_sft_labels(wrong, tokenizer)
    assert not r.passed and "two turns" in r.message


def test_mask_with_shifted_labels_fails(tokenizer):
    def wrong(messages, tokenizer, max_len):
        ids, labels = sft_labels(messages, tokenizer, max_len)
        return ids, labels[1:] + [-100]
    r = checks.check_sft_labels(wrong, tokenizer)
    assert not r.passed and "token" in r.message


def test_mask_without_truncation_fails(tokenizer):
    r = checks.check_sft_labels(lambda m, t, n: sft_labels(m, t, 10_000), tokenizer)
    assert not r.passed and "max_len" in r.message and "expected" in r.message


def test_cross_entropy_without_shift_fails():
    def wrong(logits, labels):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    r = checks.check_masked_cross_entropy(wrong)
    assert not r.passed and "differ" in r.message


def test_cross_entropy_averaged_per_row_fails():
    def wrong(logits, labels):
        rows = [masked_cross_entropy(logits[i:i + 1], labels[i:i + 1]) for i in range(logits.shape[0])]
        rows = [x for x in rows if not torch.isnan(x)]
        return torch.stack(rows).mean()
    r = checks.check_masked_cross_entropy(wrong)
    assert not r.passed and "differ" in r.message


def test_cross_entropy_over_masked_positions_fails():
    def wrong(logits, labels):
        logits, labels = logits[:, :-1], labels[:, 1:]
        logp = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return -(logp * (labels != -100)).sum() / labels.numel()
    r = checks.check_masked_cross_entropy(wrong)
    assert not r.passed and "masked prompts" in r.message


def test_dpo_without_reference_fails():
    r = checks.check_dpo_loss(lambda pc, pr, rc, rr, beta=0.1: -F.logsigmoid(beta * (pc - pr)).mean())
    assert not r.passed and "beta 0.1" in r.message


def test_dpo_without_beta_fails():
    r = checks.check_dpo_loss(lambda pc, pr, rc, rr, beta=0.1: -F.logsigmoid((pc - pr) - (rc - rr)).mean())
    assert not r.passed and "beta" in r.message


def test_dpo_reference_value_is_ln2():
    assert math.isclose(float(dpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3))), math.log(2), rel_tol=1e-6)


def sequence_score(logits, labels, reduction="mean"):
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    targets = labels[:, 1:]
    mask = targets != -100
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    total = picked.sum(-1)
    return total if reduction == "sum" else total / mask.sum(-1).clamp(min=1)


def test_sequence_score_mean_and_sum():
    assert checks.check_sequence_score(sequence_score).passed
    _fails(checks.check_sequence_score(stub), "not done yet")
    # always the mean (MiniMind2's score) fails on reduction="sum", and says so
    r = checks.check_sequence_score(lambda lg, lb, reduction="mean": sequence_score(lg, lb, "mean"))
    _fails(r, "reduction='sum'", "you returned the mean")
    # unshifted labels score the wrong tokens
    r = checks.check_sequence_score(lambda lg, lb, reduction="mean": sequence_score(
        torch.cat([lg, lg[:, -1:]], 1), torch.cat([lb[:, :1], lb], 1), reduction))
    assert not r.passed

"""Reinforcement learning with verifiable rewards: GRPO (Group Relative Policy Optimization, 强化学习).

SFT shows the model good answers; GRPO lets it answer by itself and scores what it said. For
each prompt the policy samples a *group* of G replies; a program (no reward model) checks each
reply and gives it a reward; a reply's *advantage* is how much better it did than its own group:

    rewards [B, G]  ->  advantages = (r - mean of the group) / (std of the group + eps)

The group mean stands in for PPO's learned value model: the baseline is what this prompt's
other replies earned, so no second network has to be trained to predict it. Every token of a
reply then gets its reply's advantage in PPO's clipped surrogate, and a KL term keeps the
policy near a frozen reference (the SFT model):

    ratio = exp(logp - old_logp)                          per token (1 at the first update)
    surrogate = min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)
    kl = exp(ref_logp - logp) - (ref_logp - logp) - 1     the "k3" estimator: >= 0, unbiased
    loss per token = -(surrogate - beta * kl)
    loss = mean over replies of (mean over the reply's tokens)   (GRPO's paper and MiniMind)

The pieces, each a small function that lesson 10 builds from scratch and checks against:

    read_prompts / PromptDataset   prompts with a checkable answer (eval_qa records, or `gt`)
    answer_correct, reward         the rule-based, verifiable reward
    group_advantages               group-normalised advantages
    k3_kl, clipped_surrogate       the per-token KL estimate and PPO's clipped objective
    grpo_token_loss, aggregate     their sum per token, and the loss over replies (or tokens)
    sample_rollout                 G sampled replies per prompt, as training tensors, with rewards
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .errors import DataError
from .losses import IGNORE_INDEX, token_logprobs
from .tokenizer import EOS_ID, PAD_ID

# ----------------------------------------------------------------------------------------------
# 1. prompts with a checkable answer


@dataclass(frozen=True)
class PromptRecord:
    """One prompt and what makes a reply right.

    messages: the conversation up to the reply (a trailing assistant reference is dropped).
    expected / choices: the sample world's eval_qa records: the reply must name `expected` and
    no other of `choices` (evaluate.score_reply). gt: MiniMind's agent_rl_math records: every value
    must appear in the reply (numbers compared as numbers).
    """

    messages: tuple
    expected: str | None = None
    choices: tuple = ()
    gt: tuple = ()
    kind: str = ""
    lang: str = ""


def _record(raw: bytes, obj: dict, path, line_no: int) -> PromptRecord | None:
    """The PromptRecord of one decoded line; None when it has nothing a program can check."""
    from .jsonl import EVAL_QA, parse_line

    if "expected" in obj:                      # the course's eval_qa schema, validated as such
        parse_line(raw, EVAL_QA, path, line_no)
        msgs = [m for m in obj["conversations"] if m["role"] != "assistant"][:1]
        return PromptRecord(messages=tuple(msgs), expected=obj["expected"], choices=tuple(obj.get("choices", [])),
                            kind=obj.get("kind", ""), lang=obj.get("lang", ""))
    msgs = obj.get("conversations")
    if not isinstance(msgs, list) or not msgs:
        raise DataError(path, line_no, "missing or empty; expected the prompt's messages "
                        '[{"role": "user", "content": "..."}, ...]', '"conversations"')
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(path, line_no, 'expected {"role": str, "content": str}', f'"conversations"[{i}]')
    if msgs[-1]["role"] == "assistant":        # rlaif.jsonl ends with a reference reply: not part of the prompt
        msgs = msgs[:-1]
    if not any(m["role"] == "user" for m in msgs):
        raise DataError(path, line_no, "no user message before the reply", '"conversations"')
    gt = obj.get("gt")
    if gt is None or gt == [] or gt == "":
        return None
    values = tuple(str(v).strip() for v in (gt if isinstance(gt, list) else [gt]))
    if not all(values):
        raise DataError(path, line_no, f"expected non-empty answers, got {gt!r}", '"gt"')
    return PromptRecord(messages=tuple({"role": m["role"], "content": m["content"]} for m in msgs), gt=values)


def read_prompts(path) -> list[PromptRecord]:
    """The prompts of a JSONL file that have a checkable answer.

    Reads the course's eval_qa records ({"conversations", "expected", "choices"}) and MiniMind's
    agent_rl_math records ({"conversations", "gt": [...]}). Records without an answer (rlaif.jsonl's
    are all like that: MiniMind scores them with a reward model) are skipped; a file with none at
    all is a DataError that says so. A bad line is a DataError naming the file, line and field.
    """
    path = Path(path)
    records, skipped = [], 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise DataError(path, line_no, f"not a JSON object ({e})") from None
            if not isinstance(obj, dict):
                raise DataError(path, line_no, f"expected a JSON object, got {type(obj).__name__}")
            rec = _record(raw, obj, path, line_no)
            if rec is None:
                skipped += 1
            else:
                records.append(rec)
    if not records:
        raise DataError(path, 0, f"no prompt with a checkable answer ({skipped} record(s) without \"expected\" or "
                        "\"gt\"): GRPO here needs a rule-based reward; MiniMind scores such prompts (rlaif.jsonl) "
                        "with a reward model, which the course does not download")
    return records


class PromptDataset(torch.utils.data.Dataset):
    """Prompts as token ids (chat template with the generation prompt), with their records.

    Prompts longer than `max_prompt_len` tokens keep their last `max_prompt_len` tokens.
    """

    def __init__(self, path, tokenizer, max_prompt_len: int = 256):
        from .chat import prompt_ids

        self.path = Path(path)
        self.records = read_prompts(self.path)
        self.ids = [prompt_ids(tokenizer, list(r.messages))[-max_prompt_len:] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        return {"prompt_ids": self.ids[i], "record": self.records[i]}


def collate_prompts(items: Sequence[dict]) -> dict:
    """A batch of prompts: lists, not tensors (each prompt is sampled G times, then padded)."""
    return {"prompt_ids": [it["prompt_ids"] for it in items], "records": [it["record"] for it in items]}


# ----------------------------------------------------------------------------------------------
# 2. the verifiable reward

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])")


def gt_found(reply: str, value: str) -> bool:
    """Whether `value` appears in `reply`: as a number equal to one the reply writes, else as text."""
    v = value.replace(",", "")
    if re.fullmatch(r"[-+]?\d+(?:\.\d+)?", v):
        return any(abs(float(n) - float(v)) < 1e-6 for n in _NUMBER.findall(reply.replace(",", "")))
    return value.casefold() in reply.casefold()


def answer_correct(reply: str, record: PromptRecord) -> bool:
    """The program's verdict: the reply names the right fact and no wrong one (eval_qa records,
    evaluate.score_reply, the same rule as held-out accuracy) or contains every `gt` value."""
    if record.expected is not None:
        from .evaluate import score_reply

        return score_reply(reply, record.expected, record.choices)
    return all(gt_found(reply, v) for v in record.gt)


def reward(reply: str, closed: bool, record: PromptRecord, format_weight: float = 0.5) -> float:
    """1 for a right answer, 0 for a wrong one; `format_weight` is taken off a reply that did not
    close with <|im_end|> within its token budget (it rambled on, or was cut off mid-answer)."""
    return float(answer_correct(reply, record)) - (0.0 if closed else float(format_weight))


# ----------------------------------------------------------------------------------------------
# 3. the loss, piece by piece


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """(r - mean of its group) / (std of its group + eps), for rewards [B * G] laid out group by
    group (the G replies of prompt 0, then prompt 1's, ...). std is the population one
    (unbiased=False, as MiniMind). A group whose replies all earned the same has advantage 0:
    nothing in it says which reply was better."""
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be [B * G] with G = {group_size}, got shape {tuple(rewards.shape)}")
    r = rewards.view(-1, group_size).float()
    adv = (r - r.mean(dim=1, keepdim=True)) / (r.std(dim=1, unbiased=False, keepdim=True) + eps)
    return adv.view(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled token's log-probs:
    exp(d) - d - 1 with d = ref_logp - logp. Never negative, 0 where the two agree, and its
    mean over tokens sampled from the policy is the true KL (Schulman's "k3")."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                      clip_eps: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped objective per token (to be maximised) and where the clip bound it.

    logp / old_logp: [N, T] log-probs of the sampled tokens under the policy now and when the
    replies were sampled; advantages: [N] (one per reply) or [N, T]. The ratio's change is cut at
    1 +- clip_eps in the direction the advantage pushes, so one group cannot move the policy far.
    Returns (min(ratio * A, clip(ratio) * A), clipped), both [N, T].
    """
    adv = advantages.unsqueeze(-1) if advantages.dim() == logp.dim() - 1 else advantages
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    return torch.minimum(unclipped, clipped), (clipped < unclipped)


def grpo_token_loss(logp, old_logp, ref_logp, advantages, beta: float = 0.1, clip_eps: float = 0.2):
    """-(clipped surrogate - beta * k3 KL) per token: (loss [N, T], clipped [N, T], kl [N, T])."""
    surrogate, clipped = clipped_surrogate(logp, old_logp, advantages, clip_eps)
    kl = k3_kl(logp, ref_logp)
    return -(surrogate - beta * kl), clipped, kl


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str = "sequence") -> torch.Tensor:
    """The loss over a batch of replies from per-token values [N, T] and the reply mask [N, T].

    "sequence": the mean over each reply's tokens, then over replies (GRPO's paper, MiniMind): every
    reply weighs the same, so a token of a short reply weighs more. "token": one mean over all the
    batch's reply tokens (DAPO): every token weighs the same.
    """
    mask = mask.to(per_token.dtype)
    if mode == "sequence":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    if mode == "token":
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    raise ValueError(f"mode must be 'sequence' or 'token', got {mode!r}")


# ----------------------------------------------------------------------------------------------
# 4. rollouts: G sampled replies per prompt


@dataclass
class Rollout:
    """A group of replies for each of B prompts, ready to train on (N = B * G rows).

    input_ids: prompt + reply, right-padded with PAD [N, T]; labels: the reply's tokens (with its
    <|im_end|> when it closed), -100 on the prompt and the padding. Row i belongs to prompt i // G.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    rewards: torch.Tensor            # [N]
    correct: torch.Tensor            # [N] bool: the answer check alone
    closed: torch.Tensor             # [N] bool: the reply ended with <|im_end|>
    replies: list = field(default_factory=list)   # [N] reply texts
    group_size: int = 1

    @property
    def reply_tokens(self) -> int:
        """How many reply tokens the loss reads (the shifted labels that are not -100)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


@torch.no_grad()
def sample_replies(model, prompts: Sequence[Sequence[int]], group_size: int, max_new_tokens: int = 32,
                   temperature: float = 1.0, top_p: float | None = None, generator=None):
    """G sampled replies to each prompt: a list of (reply token ids, closed), prompt by prompt.

    All B * G sequences are sampled in one batch (prompts left-padded, an attention mask hiding the
    padding), with the model's KV cache; a reply stops at <|im_end|> (kept) or after max_new_tokens.
    """
    from .generate import generate

    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    rows = [list(p) for p in prompts for _ in range(group_size)]
    longest = max(len(p) for p in rows)
    ids = torch.full((len(rows), longest), PAD_ID, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, p in enumerate(rows):
        ids[r, longest - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[r, longest - len(p):] = 1
    device = next(model.parameters()).device
    new = generate(model, ids.to(device), max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                   top_k=None, top_p=top_p, eos_token_id=EOS_ID, attention_mask=mask.to(device),
                   generator=generator).cpu()
    out = []
    for toks in new.tolist():
        if EOS_ID in toks:
            out.append((toks[:toks.index(EOS_ID) + 1], True))
        else:
            out.append((toks, False))
    return out


def pack_replies(prompts: Sequence[Sequence[int]], replies: Sequence[Sequence[int]], group_size: int):
    """(input_ids, labels) [N, T]: each prompt + reply, right-padded; only the reply is labelled."""
    rows = [(list(prompts[i // group_size]), list(r)) for i, r in enumerate(replies)]
    T = max(len(p) + len(r) for p, r in rows)
    input_ids = torch.full((len(rows), T), PAD_ID, dtype=torch.long)
    labels = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
    for i, (p, r) in enumerate(rows):
        input_ids[i, :len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
        if r:
            labels[i, len(p):len(p) + len(r)] = torch.tensor(r, dtype=torch.long)
    return input_ids, labels


def sample_rollout(model, tokenizer, prompts: Sequence[Sequence[int]], records: Sequence[PromptRecord],
                   group_size: int, max_new_tokens: int = 32, temperature: float = 1.0, top_p: float | None = None,
                   format_weight: float = 0.5, generator=None) -> Rollout:
    """Sample G replies per prompt, score each with `reward`, and lay them out for training."""
    sampled = sample_replies(model, prompts, group_size, max_new_tokens, temperature, top_p, generator)
    texts, correct, closed, rewards = [], [], [], []
    for i, (toks, is_closed) in enumerate(sampled):
        text = tokenizer.decode(toks[:-1] if is_closed else toks, skip_special_tokens=True)
        text = text if is_closed else text.rstrip("\ufffd")
        rec = records[i // group_size]
        texts.append(text)
        correct.append(answer_correct(text, rec))
        closed.append(is_closed)
        rewards.append(reward(text, is_closed, rec, format_weight))
    input_ids, labels = pack_replies(prompts, [t for t, _ in sampled], group_size)
    return Rollout(input_ids=input_ids, labels=labels, rewards=torch.tensor(rewards, dtype=torch.float32),
                   correct=torch.tensor(correct), closed=torch.tensor(closed), replies=texts, group_size=group_size)


def sampled_accuracy(model, tokenizer, records: Sequence[PromptRecord], samples: int = 4, temperature: float = 0.85,
                     top_p: float | None = 0.85, max_new_tokens: int = 32, batch_size: int = 32,
                     seed: int = 0) -> float:
    """The share of right answers when the model *samples* its replies, `samples` per question.

    Greedy accuracy asks whether the right answer is the model's first choice; this asks how much
    of its probability the model puts on right answers, the way a chat samples (MiniMind's
    defaults: temperature 0.85, top-p 0.85). A fixed `seed` makes it repeatable.
    """
    from .chat import prompt_ids

    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    right = 0
    for start in range(0, len(records), batch_size):
        recs = records[start:start + batch_size]
        prompts = [prompt_ids(tokenizer, list(r.messages)) for r in recs]
        for i, (toks, closed) in enumerate(sample_replies(model, prompts, samples, max_new_tokens, temperature,
                                                           top_p, generator=gen)):
            text = tokenizer.decode(toks[:-1] if closed else toks, skip_special_tokens=True)
            right += answer_correct(text, recs[i // samples])
    return right / (len(records) * samples)


def reply_logprobs(model, input_ids: torch.Tensor, labels: torch.Tensor):
    """(log-probs of the reply tokens [N, T-1], mask [N, T-1]) under `model` (losses.token_logprobs)."""
    return token_logprobs(model(input_ids=input_ids).logits, labels)


__all__ = ["PromptRecord", "read_prompts", "PromptDataset", "collate_prompts", "gt_found", "answer_correct", "reward",
           "group_advantages", "k3_kl", "clipped_surrogate", "grpo_token_loss", "aggregate", "Rollout",
           "sample_replies", "pack_replies", "sample_rollout", "sampled_accuracy", "reply_logprobs"]

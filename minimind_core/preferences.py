"""Preference pairs (偏好数据) for DPO, made from a model's own replies.

A DPO pair is one prompt with two replies, a preferred ("chosen") and a dispreferred ("rejected")
one, in MiniMind's dpo schema:

    {"chosen":   [{"role": "user", "content": Q}, {"role": "assistant", "content": good}],
     "rejected": [{"role": "user", "content": Q}, {"role": "assistant", "content": bad}]}

Pairs teach most when the rejected reply is what the model would actually say. So the sample
world's pairs are *self-generated negatives*: the SFT model answers questions about the training
half of the world greedily, and its own reply is the rejected side. The chosen side is the true
answer closed with a remark that the SFT data never uses ("She lives in Selstead. Everyone
knows that."): a style DPO has to add, and `has_style` sees it in any reply. A right reply makes a
style pair; a wrong one (the tiny SFT model makes almost none) a fact pair, aimed at its mistake.

    items = fact_questions("train")                          # eval_qa-schema questions with answers
    pairs, counts = style_pairs(model, tokenizer, items)     # its own replies against the styled truth
    train_pairs, heldout_pairs = split_by_fact(pairs, heldout=0.25)
    write_jsonl("runs/tiny/dpo_pairs.jsonl", to_pairs(train_pairs))
    style_measure(model, tokenizer, heldout_questions(eval_qa))   # the style rate and the facts

`preference_stats` scores pairs the way DPO does (implicit rewards, their margin, the share of
pairs whose chosen reply wins), for held-out pairs before and after training.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import sample_corpus as world_text
from .errors import DataError

# ----------------------------------------------------------------------------------------------
# questions about the sample world, with their answers


def fact_questions(split: str = "train", seed: int = world_text.DEFAULT_SEED,
                   langs: Sequence[str] = world_text.LANGS) -> list[dict]:
    """Every question the sample world's templates can ask about one half of its entities.

    split: "train" (the people and cities that supervised fine-tuning asks about) or "heldout"
    (the other half, which `eval_qa.jsonl` asks about). Each record has the eval_qa schema plus
    "fact" (which entity, fact and language: all wordings of one fact share it); the assistant
    message is the answer in the SFT data's own wording.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    world = world_text.build_world(random.Random(seed))
    want_train = split == "train"
    entities = [("person", e, world_text.PERSON_FACTS) for e in world.people if e.train == want_train]
    entities += [("city", e, world_text.CITY_FACTS) for e in world.cities if e.train == want_train]
    out = []
    for lang in langs:
        for what, entity, kinds in entities:
            for kind in kinds:
                good = world_text.answer(entity, kind, lang)
                for template in world_text.QUESTIONS[lang][kind]:
                    q = world_text.question(entity, kind, lang, template)
                    out.append({"conversations": [{"role": "user", "content": q},
                                                  {"role": "assistant", "content": good}],
                                "expected": world_text._fact_value(entity, kind, lang),
                                "choices": world_text.choices(kind, lang), "kind": kind, "lang": lang,
                                "fact": f"{what}:{entity.en}:{kind}:{lang}"})
    return out


# ----------------------------------------------------------------------------------------------
# the model's mistakes


@dataclass
class Mistake:
    """A question the model answered wrongly: its reply becomes a pair's rejected side."""

    item: dict           # the eval_qa-schema question (with "fact")
    reply: str           # the model's greedy reply (or, when that was blank, its likeliest wrong answer)
    in_format: bool      # the greedy reply was closed with <|im_end|> (a near miss: True, a whole answer)
    greedy: bool = True  # False: the greedy reply was blank and `reply` is the likeliest wrong answer
    chosen: str = ""     # the preferred reply; empty: the true answer in the SFT data's wording

    @property
    def question(self) -> str:
        return self.item["conversations"][0]["content"]

    @property
    def answer(self) -> str:
        return self.chosen or self.item["conversations"][1]["content"]


def find_mistakes(model, tokenizer, items: Sequence[dict], max_new_tokens: int = 32,
                  batch_size: int = 32) -> tuple[list[Mistake], int]:
    """(the questions of `items` that `model` answers wrongly, how many it answers right).

    Wrong means what held-out accuracy means (evaluate.score_reply): the greedy reply does not
    name the expected value, or names another choice too.
    """
    from .evaluate import greedy_replies, score_reply

    replies = greedy_replies(model, tokenizer, [it["conversations"][0]["content"] for it in items],
                             max_new_tokens=max_new_tokens, batch_size=batch_size)
    mistakes, n_right = [], 0
    for it, (reply, closed) in zip(items, replies):
        if score_reply(reply, it["expected"], it["choices"]):
            n_right += 1
        elif reply.strip():
            mistakes.append(Mistake(it, reply, closed))
        else:  # a blank reply is no text to reject: take the wrong answer the model likes best
            mistakes.append(Mistake(it, likeliest_wrong_answer(model, tokenizer, it), closed, greedy=False))
    return mistakes, n_right


def wrong_answers(item: dict) -> list[str]:
    """The item's answer sentence with every other choice in place of the expected value."""
    good, right = item["conversations"][1]["content"], item["expected"]
    out = []
    for other in item["choices"]:
        if other == right:
            continue
        bad = good.replace(right, other)
        if item["lang"] == "en":  # "is a baker" -> "is an artist": the article follows the word
            bad = bad.replace(f" a {other}", f" an {other}") if other[0] in "aeiou" else bad.replace(f" an {other}", f" a {other}")
        out.append(bad)
    return out


def likeliest_wrong_answer(model, tokenizer, item: dict) -> str:
    """Of the wrong answers in the course's answer form, the one `model` gives the highest mean
    log-probability: the error it is closest to making when its greedy reply says nothing."""
    user = {"role": "user", "content": item["conversations"][0]["content"]}
    candidates = wrong_answers(item)
    scores = reply_scores(model, tokenizer, [[user, {"role": "assistant", "content": c}] for c in candidates])
    return candidates[int(scores.argmax())]


# ----------------------------------------------------------------------------------------------
# a style the SFT data lacks: a closing remark

# The SFT data answers with the bare fact ("She lives in Selstead.") and nothing after it, so the SFT
# model never adds a remark. The style pairs prefer the same true answer followed by one ("She lives
# in Selstead. Everyone knows that.", "她住在青岚城。大家都知道。"): a behaviour DPO must add, that a
# rule sees in any reply. The remark is made of words the sample corpus uses often: a phrase in rare
# tokens ("Hope this helps!") is spelled out piece by piece, and the tiny model rambles on after
# its first piece. (Naming the subject, "Una Irwin lives in Rosmere.", is absent from the SFT data
# too, but a 1M-parameter model cannot copy a rare name out of the question: it names someone else
# and its fact accuracy collapses.)
CLOSING = {"en": "Everyone knows that.", "zh": "大家都知道。"}


def styled_answer(item: dict) -> str:
    """The item's true answer, in the SFT data's wording, closed with the remark of its language."""
    sep = " " if item["lang"] == "en" else ""
    return item["conversations"][1]["content"] + sep + CLOSING[item["lang"]]


def has_style(reply: str, item: dict) -> bool:
    """The style rule: the reply ends with the closing remark of the question's language."""
    return reply.rstrip().endswith(CLOSING[item["lang"]])


def style_pairs(model, tokenizer, items: Sequence[dict], max_new_tokens: int = 32, batch_size: int = 32
                ) -> tuple[list[Mistake], dict]:
    """Pairs from the model's own replies that prefer the closing remark, and the truth.

    For every question the model's greedy reply is the rejected side and the true answer with the
    remark (`styled_answer`) the chosen side: a right answer without it makes a *style* pair, a
    wrong answer a *fact* pair (a blank reply is replaced by the wrong answer the model scores
    highest, as in find_mistakes). A right reply that already has the style makes no pair.
    Returns (the pairs as Mistakes, counts {"style", "fact", "already"}).
    """
    from .evaluate import greedy_replies, score_reply

    replies = greedy_replies(model, tokenizer, [it["conversations"][0]["content"] for it in items],
                             max_new_tokens=max_new_tokens, batch_size=batch_size)
    out, counts = [], {"style": 0, "fact": 0, "already": 0}
    for it, (reply, closed) in zip(items, replies):
        right = score_reply(reply, it["expected"], it["choices"])
        if right and has_style(reply, it):
            counts["already"] += 1
            continue
        counts["style" if right else "fact"] += 1
        greedy = bool(reply.strip())
        if not greedy:
            reply = likeliest_wrong_answer(model, tokenizer, it)
        out.append(Mistake(it, reply, closed, greedy=greedy, chosen=styled_answer(it)))
    return out, counts


@dataclass
class StyleResult:
    """How often a model's greedy replies have the targeted style, and how often they are right."""

    style_rate: float        # share of replies with the closing remark (has_style)
    accuracy: float          # share of replies that name the right value and no other (score_reply)
    n: int
    replies: list            # the greedy reply to each question, in order

    def line(self) -> str:
        return f"style {self.style_rate:.2f}, facts right {self.accuracy:.2f} (n={self.n})"


def style_measure(model, tokenizer, items: Sequence[dict], max_new_tokens: int = 32,
                  batch_size: int = 32) -> StyleResult:
    """The targeted behaviour and the facts, from one greedy pass over `items` (fact_questions records)."""
    from .evaluate import greedy_replies, score_reply

    if not items:
        raise ValueError("style_measure: no questions")
    replies = [r for r, _ in greedy_replies(model, tokenizer, [it["conversations"][0]["content"] for it in items],
                                            max_new_tokens=max_new_tokens, batch_size=batch_size)]
    styled = sum(has_style(r, it) for r, it in zip(replies, items))
    right = sum(score_reply(r, it["expected"], it["choices"]) for r, it in zip(replies, items))
    return StyleResult(style_rate=styled / len(items), accuracy=right / len(items), n=len(items), replies=replies)


def heldout_questions(eval_file) -> list[dict]:
    """The questions of `eval_file` (eval_qa schema: the held-out half of the world) as
    fact_questions records (with their language, kind and fact). A question that is
    not about the held-out half is a DataError naming the file and line."""
    by_question = {it["conversations"][0]["content"]: it for it in fact_questions("heldout")}
    out = []
    with open(eval_file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            q = json.loads(line)["conversations"][0]["content"]
            if q not in by_question:
                raise DataError(eval_file, n, f"question {q!r} is not about the held-out half of the sample world")
            out.append(by_question[q])
    return out


def split_by_fact(mistakes: Sequence[Mistake], heldout: float = 0.25, seed: int = 0
                  ) -> tuple[list[Mistake], list[Mistake]]:
    """(train, held-out): whole facts are held out, so no held-out question shares its answer
    with a training pair; about `heldout` of the facts, chosen by `seed`."""
    if not 0.0 <= heldout < 1.0:
        raise ValueError(f"heldout must be in [0, 1), got {heldout}")
    facts = sorted({m.item["fact"] for m in mistakes})
    random.Random(seed).shuffle(facts)
    held = set(facts[:round(heldout * len(facts))])
    return ([m for m in mistakes if m.item["fact"] not in held],
            [m for m in mistakes if m.item["fact"] in held])


def to_pairs(mistakes: Sequence[Mistake]) -> list[dict]:
    """DPO pairs (MiniMind's dpo schema): the true answer chosen, the model's own reply rejected.

    A reply that was cut off without <|im_end|> is kept as it is: the rejected side then ends with
    <|im_end|> after the cut, and DPO lowers the probability of the rambling that led there. An
    empty reply makes no pair (the dpo schema needs a non-empty message).
    """
    pairs = []
    for m in mistakes:
        if not m.reply.strip():
            continue
        user = {"role": "user", "content": m.question}
        pairs.append({"chosen": [user, {"role": "assistant", "content": m.answer}],
                      "rejected": [user, {"role": "assistant", "content": m.reply}]})
    return pairs


def questions_of(pairs: Sequence[dict], items: Sequence[dict]) -> list[dict]:
    """The questions (of `items`) that `pairs` ask, in the pairs' order: to measure whether the
    model now answers them right. A pair whose question is not among `items` is a ValueError."""
    by_question = {it["conversations"][0]["content"]: it for it in items}
    out = []
    for i, p in enumerate(pairs):
        q = p["chosen"][-2]["content"]
        if q not in by_question:
            raise ValueError(f"pair {i}: question {q!r} is not among the given questions")
        out.append(by_question[q])
    return out


def write_jsonl(path, records: Sequence[dict]) -> Path:
    """Write `records` one JSON object per line (UTF-8, Chinese unescaped); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_pairs(path) -> list[dict]:
    """The pairs of a dpo-schema file (a bad line is a DataError naming the file, line and field)."""
    from .jsonl import iter_records

    pairs = [rec for _, rec in iter_records(path, "dpo")]
    if not pairs:
        raise DataError(path, 0, "no preference pairs")
    return pairs


# ----------------------------------------------------------------------------------------------
# scoring pairs the way DPO does


@dataclass
class PreferenceStats:
    """How a policy scores preference pairs against the reference (see losses.dpo_loss)."""

    accuracy: float          # share of pairs whose chosen reply gets the higher implicit reward
    margin: float            # mean of beta * ((pc - rc) - (pr - rr))
    loss: float              # mean DPO loss (ln 2 = 0.693 when the policy is the reference)
    prefers_chosen: float    # share of pairs where the policy itself scores chosen above rejected
    chosen_logp: float       # mean policy score of the chosen replies
    rejected_logp: float     # mean policy score of the rejected replies
    n: int


def reply_scores(model, tokenizer, conversations: Sequence[list], score: str = "mean", seq_len: int = 256,
                 batch_size: int = 32):
    """Each conversation's sequence score under `model` (the sum or mean log-probability of its
    assistant tokens, masked as in SFT and DPO): a [n] float tensor."""
    import torch

    from .datasets import collate_pad, encode_conversation
    from .losses import sequence_logprobs

    device = next(model.parameters()).device
    out = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(conversations), batch_size):
                enc = [dict(zip(("input_ids", "labels"), map(torch.tensor, encode_conversation(c, tokenizer, seq_len))))
                       for c in conversations[start:start + batch_size]]
                b = collate_pad(enc)
                logits = model(input_ids=b["input_ids"].to(device)).logits
                out.append(sequence_logprobs(logits, b["labels"].to(device), reduction=score).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def sequence_scores(model, tokenizer, pairs: Sequence[dict], score: str = "mean", seq_len: int = 256):
    """(chosen, rejected): each pair's two sequence scores under `model` ([n] float tensors)."""
    return (reply_scores(model, tokenizer, [p["chosen"] for p in pairs], score, seq_len),
            reply_scores(model, tokenizer, [p["rejected"] for p in pairs], score, seq_len))


def preference_stats(policy, reference, tokenizer, pairs: Sequence[dict], beta: float = 0.1,
                     score: str = "mean", seq_len: int = 256) -> PreferenceStats:
    """Preference accuracy, margin and DPO loss of `policy` on `pairs`, against `reference`.

    The policy's implicit reward of a reply is beta * (its score - the reference's score); a pair
    counts as won when the chosen reply's reward beats the rejected one's.
    """
    from .losses import dpo_loss

    if not pairs:
        raise ValueError("preference_stats: no pairs")
    pc, pr = sequence_scores(policy, tokenizer, pairs, score, seq_len)
    rc, rr = sequence_scores(reference, tokenizer, pairs, score, seq_len)
    loss, m = dpo_loss(pc, pr, rc, rr, beta=beta)
    return PreferenceStats(accuracy=m["accuracy"], margin=m["margin"], loss=float(loss),
                           prefers_chosen=float((pc > pr).float().mean()), chosen_logp=float(pc.mean()), rejected_logp=float(pr.mean()), n=len(pairs))


__all__ = ["fact_questions", "Mistake", "find_mistakes", "wrong_answers", "likeliest_wrong_answer", "CLOSING",
           "styled_answer", "has_style", "style_pairs", "StyleResult", "style_measure", "heldout_questions",
           "split_by_fact", "to_pairs", "questions_of", "write_jsonl",
           "read_pairs", "PreferenceStats", "reply_scores", "sequence_scores", "preference_stats"]

"""Reasoning distillation (推理蒸馏) on the sample world: two-hop questions and `<think>` traces.

A two-hop question joins two facts the world stores apart: "Which country does Mira Larkin live
in?" needs Mira's city, then that city's country. MiniMind's reasoning models (R1-style) learn
to write their steps first, `<think>\\n...\\n</think>\\n\\n` and then the answer, from traces a
larger teacher wrote (DeepSeek-R1's distilled models were made the same way: a strong model
writes traces, only those whose final answer is right are kept, and a small model is fine-tuned
on them: black-box distillation, because only the teacher's text is used, not its logits).

Here the teacher is the SFT model, and it writes its trace the simplest way there is: it asks
itself the two single-hop questions it was trained on ("Which city does Mira Larkin live in?",
then "Which country is Brackwell in?") and answers them (self-ask). The trace is its own reply to
the first and the second fact in the pretraining text's words:

    <think>
    She lives in Brackwell. Brackwell is in Norvik.
    </think>

    She lives in Norvik.

The wording matters for a small student: a trace that repeats the sub-questions with the
person's name taught the tiny student to write *training* people's names into its thinking; one
that starts as the SFT model answers a question about a person (with the pronoun) leaves the
name in the question, where the model reads it.

    items = two_hop_questions("train")                         # eval_qa-schema questions with answers
    traces = teacher_traces(teacher, tokenizer, items)         # the teacher's hops, right or wrong
    kept = [t for t in traces if t.correct]                    # rejection sampling
    rows = to_conversations(kept, think=True)                  # SFT-schema records with reasoning_content

`reasoning_accuracy` measures a model on the held-out half's two-hop questions
(`sample/reason_eval.jsonl`): the part of the reply after `</think>` must name the right country.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import sample_corpus as world_text

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# the single-hop questions the teacher asks itself (worded as the SFT data words them)
CITY_HOP = {"en": "Which city does {N} live in?", "zh": "{N}住在哪座城市？"}
COUNTRY_HOP = {"en": "Which country is {N} in?", "zh": "{N}在哪个国家？"}
# how the trace states the second fact: a sentence form of the pretraining text (sample_corpus.T_COUNTRY)
STATE_COUNTRY = {"en": "{c} is in {k}.", "zh": "{c}在{k}。"}


# ----------------------------------------------------------------------------------------------
# the questions


def two_hop_questions(split: str = "train", seed: int = world_text.DEFAULT_SEED,
                      langs: Sequence[str] = world_text.LANGS) -> list[dict]:
    """Every wording of "which country does X live in?" for one half of the sample world's people.

    split: "train" (the people supervised fine-tuning asked about: the traces are made for them)
    or "heldout" (the other half; `reason_eval.jsonl` asks one wording per person). Each record
    has the eval_qa schema plus "person" (the name as asked) and "city" (the first hop's answer).
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    world = world_text.build_world(random.Random(seed))
    out = []
    for lang in langs:
        li = 0 if lang == "en" else 1
        for p in world.people:
            if p.train != (split == "train"):
                continue
            name = p.en if lang == "en" else p.zh
            for template in world_text.TWO_HOP_QUESTIONS[lang]:
                out.append({"conversations": [{"role": "user", "content": template.format(N=name)},
                                              {"role": "assistant", "content": world_text.two_hop_answer(p, lang)}],
                            "expected": world_text.home_country(p, lang), "choices": world_text.choices("country", lang),
                            "kind": world_text.HOME_COUNTRY, "lang": lang, "person": name,
                            "city": world_text.CITIES[p.city][li]})
    return out


def named_choice(text: str, choices: Sequence[str]) -> str | None:
    """The one entry of `choices` that `text` names (evaluate.score_reply's rule), else None."""
    from .evaluate import score_reply

    named = [c for c in choices if score_reply(text, c, choices)]
    return named[0] if len(named) == 1 else None


# ----------------------------------------------------------------------------------------------
# the teacher's traces


@dataclass
class Trace:
    """A teacher's two hops for one two-hop question, and what they conclude."""

    item: dict                                  # the two-hop question (two_hop_questions' schema)
    hops: list = field(default_factory=list)    # [(sub-question, the teacher's reply)], one or two
    city: str | None = None                     # the city the first reply names (None: no single city)
    country: str | None = None                  # the country the second reply names

    @property
    def correct(self) -> bool:
        """The trace's conclusion is the true answer (what rejection sampling keeps)."""
        return self.country is not None and self.country == self.item["expected"]

    @property
    def reasoning(self) -> str:
        """The thinking: the teacher's own reply to the first hop ("She lives in Brackwell."), then the
        city's country stated the way the pretraining text states it ("Brackwell is in Norvik.");
        as far as the trace got when a hop failed."""
        lang = self.item["lang"]
        steps = [self.hops[0][1]] if self.hops else []
        if self.city and self.country:
            steps.append(STATE_COUNTRY[lang].format(c=self.city, k=self.country))
        return (" " if lang == "en" else "").join(steps)

    @property
    def answer(self) -> str:
        """The final answer, in the SFT data's wording, naming the country the trace concluded."""
        return self.item["conversations"][1]["content"].replace(self.item["expected"], self.country or "?")


def teacher_traces(model, tokenizer, items: Sequence[dict], batch_size: int = 32) -> list[Trace]:
    """The teacher answers each item's two single-hop questions greedily, the second about the
    city its first reply named; one Trace per item, right or wrong (filter on `Trace.correct`)."""
    from .evaluate import greedy_replies

    traces = [Trace(it) for it in items]
    first = [CITY_HOP[it["lang"]].format(N=it["person"]) for it in items]
    for t, q, (reply, _) in zip(traces, first, greedy_replies(model, tokenizer, first, 32, batch_size)):
        t.hops.append((q, reply.strip()))
        t.city = named_choice(reply, world_text.choices("city", t.item["lang"]))
    asking = [t for t in traces if t.city is not None]
    second = [COUNTRY_HOP[t.item["lang"]].format(N=t.city) for t in asking]
    for t, q, (reply, _) in zip(asking, second, greedy_replies(model, tokenizer, second, 32, batch_size)):
        t.hops.append((q, reply.strip()))
        t.country = named_choice(reply, t.item["choices"])
    return traces


def reference_trace(item: dict) -> Trace:
    """The trace a teacher that knows every fact would write, from the sample world's own answers:
    what completes the data when the teacher gets too few questions right (the smoke profile)."""
    lang, city = item["lang"], item["city"]
    city_reply = item["conversations"][1]["content"].replace(item["expected"], city)  # "She lives in <city>."
    country_reply = world_text.ANSWERS[lang]["country"].format(v=item["expected"])
    return Trace(item, [(CITY_HOP[lang].format(N=item["person"]), city_reply),
                        (COUNTRY_HOP[lang].format(N=city), country_reply)], city, item["expected"])


def to_conversations(traces: Sequence[Trace], think: bool = True) -> list[dict]:
    """SFT-schema records: the question, then the answer, with the trace as `reasoning_content`
    (rendered `<think>\\n...\\n</think>\\n\\n` before the answer) when `think`; answer only otherwise."""
    out = []
    for t in traces:
        reply = {"role": "assistant", "content": t.answer}
        if think:
            reply["reasoning_content"] = t.reasoning
        out.append({"conversations": [t.item["conversations"][0], reply]})
    return out


def write_jsonl(path, rows: Sequence[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# measuring a model


def split_reply(reply: str) -> tuple[str | None, str]:
    """(thinking, answer) of a reply: the text inside `<think>...</think>` (None when the reply does
    not think) and what follows it. A reply that opens `<think>` and never closes it has no answer."""
    text = reply.lstrip()
    if not text.startswith(THINK_OPEN):
        return None, reply.strip()
    body = text[len(THINK_OPEN):]
    if THINK_CLOSE not in body:
        return body.strip(), ""
    thinking, answer = body.split(THINK_CLOSE, 1)
    return thinking.strip(), answer.strip()


def reasoning_accuracy(model, tokenizer, eval_file, max_new_tokens: int = 96, batch_size: int = 32,
                       limit: int | None = None):
    """Two-hop accuracy (evaluate.QAResult): a reply is right when its ANSWER (after `</think>`,
    or the whole reply when it does not think) names the expected country and no other. Each row's
    `reply` is the whole reply; `thinks` on the result is the share of replies that thought first."""
    from .evaluate import QARow, greedy_replies, load_eval_items, score_reply, summarise

    items = load_eval_items(eval_file, limit=limit)
    replies = greedy_replies(model, tokenizer, [it.question for it in items], max_new_tokens, batch_size)
    rows, n_think = [], 0
    for it, (reply, closed) in zip(items, replies):
        thinking, answer = split_reply(reply)
        n_think += thinking is not None
        rows.append(QARow(question=it.question, expected=it.expected, reply=reply, kind=it.kind, lang=it.lang,
                          correct=score_reply(answer, it.expected, it.choices), in_format=closed))
    result = summarise(rows)
    result.thinks = n_think / len(rows)
    return result


__all__ = ["two_hop_questions", "named_choice", "Trace", "teacher_traces", "reference_trace", "to_conversations", "write_jsonl",
           "split_reply", "reasoning_accuracy", "CITY_HOP", "COUNTRY_HOP", "THINK_OPEN", "THINK_CLOSE"]

"""Evaluation (评测): held-out question accuracy and perplexity.

Question accuracy. Each line of an eval file is one question with its answer (the `eval_qa` schema,
validated by minimind_core.jsonl like every other data file):

    {"conversations": [{"role": "user", "content": Q}, {"role": "assistant", "content": reference}],
     "expected": "Selstead", "choices": ["Selstead", "Brookmere", ...], "kind": "city", "lang": "en"}

The model answers Q greedily through the chat template (the system message, the user message and
the generation prompt `<|im_start|>assistant\\n`) until it writes `<|im_end|>`. A reply is correct
when it names `expected` and none of the other `choices` (so "Selstead or Brookmere" does not
count). It is "in format" when the model closed its reply with `<|im_end|>` within the token
budget: a pretrained model that never learned the chat format rambles on instead.

Perplexity (困惑度) = exp(mean negative log-likelihood per predicted token): on pretrain-schema
files over the documents' text (bos + text + eos, packed into windows of `seq_len` tokens), on
SFT-schema files over the assistant tokens only (the trained tokens of 监督微调).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .chat import prompt_ids
from .datasets import encode_conversation
from .errors import EvalError
from .jsonl import EVAL_QA, detect_stage, iter_records
from .losses import IGNORE_INDEX
from .tokenizer import BOS_ID, EOS_ID, PAD_ID

# ----------------------------------------------------------------------------------------------
# the eval file


@dataclass
class EvalItem:
    question: str
    expected: str
    choices: list[str]
    kind: str
    lang: str
    reference: str | None = None
    line: int = 0


def load_eval_items(path: str | Path, limit: int | None = None) -> list[EvalItem]:
    """Read an eval file (the eval_qa schema of `minimind_core.jsonl`); a bad line is a DataError
    naming the file, the line and the field, a file without questions an EvalError."""
    path = Path(path)
    items = []
    for line_no, obj in iter_records(path, EVAL_QA):
        msgs = obj["conversations"]
        reference = msgs[1]["content"] if len(msgs) > 1 and msgs[1]["role"] == "assistant" else None
        items.append(EvalItem(question=msgs[0]["content"], expected=obj["expected"],
                              choices=list(obj.get("choices", [])), kind=obj.get("kind", ""),
                              lang=obj.get("lang", ""), reference=reference, line=line_no))
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise EvalError(f"{path}: no questions")
    return items


# ----------------------------------------------------------------------------------------------
# scoring


def _occurs(text: str, needle: str, longer: Sequence[str]) -> bool:
    """Whether `needle` occurs in `text` other than inside an occurrence of a longer choice."""
    covered = [False] * len(text)
    for other in longer:
        start = text.find(other)
        while start != -1:
            for i in range(start, start + len(other)):
                covered[i] = True
            start = text.find(other, start + 1)
    start = text.find(needle)
    while start != -1:
        if not all(covered[start:start + len(needle)]):
            return True
        start = text.find(needle, start + 1)
    return False


def score_reply(reply: str, expected: str, choices: Sequence[str] = ()) -> bool:
    """True when `reply` names `expected` and no other entry of `choices`.

    Matching is case-insensitive. A choice found only inside a longer choice does not count
    as named ("Lake" inside "Lakeside"), so choices may be prefixes of one another.
    """
    text = reply.casefold()
    exp = expected.casefold()
    options = {c.casefold() for c in choices} | {exp}
    if not _occurs(text, exp, [o for o in options if len(o) > len(exp) and exp in o]):
        return False
    for other in options - {exp}:
        if _occurs(text, other, [o for o in options if len(o) > len(other) and other in o]):
            return False
    return True


# ----------------------------------------------------------------------------------------------
# greedy answers


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def greedy_token_ids(model, tokenizer, questions: Sequence[str], max_new_tokens: int = 48,
                     batch_size: int = 16, progress: bool = False) -> list[list[int]]:
    """The greedy reply tokens to each question (up to and including <|im_end|> when produced).

    Questions are answered `batch_size` at a time, left-padded with an attention mask: padded keys
    are masked out and RoPE makes the attention scores depend only on relative positions, so
    shifting a prompt right changes nothing but rounding. In float32 that gives the same tokens as one question at a time; in bfloat16 the
    rounding is coarse enough to flip near-ties of an untrained model, so compare batched and
    unbatched runs in float32. Batches hold questions of similar length (little padding).
    """
    from .generate import generate

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _model_device(model)
    encoded = [prompt_ids(tokenizer, q) for q in questions]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    results: list[list[int]] = [[] for _ in encoded]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(encoded), desc="answering", unit="q")
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        longest = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), longest), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, i in enumerate(batch):
            seq = encoded[i]
            ids[row, longest - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, longest - len(seq):] = 1
        new = generate(model, ids.to(device), max_new_tokens=max_new_tokens, do_sample=False,
                       eos_token_id=EOS_ID, attention_mask=mask.to(device))
        for row, i in enumerate(batch):
            toks = new[row].tolist()
            if EOS_ID in toks:
                toks = toks[:toks.index(EOS_ID) + 1]
            results[i] = toks
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return results


def greedy_replies(model, tokenizer, questions: Sequence[str], max_new_tokens: int = 48,
                   batch_size: int = 16, progress: bool = False) -> list[tuple[str, bool]]:
    """Greedy chat replies to `questions`: a list of (reply text, in_format), where in_format means
    the reply was closed with <|im_end|> within `max_new_tokens` tokens."""
    out = []
    for toks in greedy_token_ids(model, tokenizer, questions, max_new_tokens, batch_size, progress):
        closed = bool(toks) and toks[-1] == EOS_ID
        text = tokenizer.decode(toks[:-1] if closed else toks, skip_special_tokens=True)
        # a reply cut off by the token budget may end inside a multi-byte character: drop that tail
        out.append((text if closed else text.rstrip("\ufffd"), closed))
    return out


@dataclass
class QARow:
    question: str
    expected: str
    reply: str
    correct: bool
    in_format: bool
    kind: str = ""
    lang: str = ""


@dataclass
class QAResult:
    accuracy: float
    n_correct: int
    n: int
    in_format: float                       # fraction of replies closed with <|im_end|>
    rows: list[QARow] = field(default_factory=list)
    by_lang: dict = field(default_factory=dict)   # {lang: {"n", "n_correct", "accuracy"}}
    by_kind: dict = field(default_factory=dict)   # {kind: {"n", "n_correct", "accuracy"}}

    def line(self) -> str:
        """`accuracy: 0.xx (n/N)`, the last line of `eval qa`."""
        return f"accuracy: {self.accuracy:.2f} ({self.n_correct}/{self.n})"

    def to_dict(self) -> dict:
        return asdict(self)


def _breakdown(rows: Sequence[QARow], key: str) -> dict:
    groups: dict = defaultdict(lambda: [0, 0])
    for r in rows:
        g = groups[getattr(r, key)]
        g[0] += int(r.correct)
        g[1] += 1
    return {k: {"n": n, "n_correct": c, "accuracy": c / n} for k, (c, n) in sorted(groups.items())}


def summarise(rows: Sequence[QARow]) -> QAResult:
    """QAResult from scored rows (accuracy = correct / all; in_format = closed / all)."""
    n = len(rows)
    if n == 0:
        raise ValueError("no rows to summarise")
    n_correct = sum(int(r.correct) for r in rows)
    return QAResult(accuracy=n_correct / n, n_correct=n_correct, n=n,
                    in_format=sum(int(r.in_format) for r in rows) / n, rows=list(rows),
                    by_lang=_breakdown(rows, "lang"), by_kind=_breakdown(rows, "kind"))


def format_row(row: QARow) -> str:
    """One answer as `eval qa --show` prints it: `ok ` or `-- `, question -> reply (expected)."""
    mark = "ok " if row.correct else "-- "
    fmt = "" if row.in_format else "  [no <|im_end|>]"
    reply = row.reply.replace("\n", " / ")
    return f"{mark}{row.question}  ->  {reply}  (expected: {row.expected}){fmt}"


def qa_accuracy(model, tokenizer, eval_file: str | Path, max_new_tokens: int = 48, limit: int | None = None,
                batch_size: int = 16, progress: bool = False) -> QAResult:
    """Held-out question accuracy of a chat model (greedy replies, see the module docstring)."""
    items = load_eval_items(eval_file, limit=limit)
    replies = greedy_replies(model, tokenizer, [it.question for it in items], max_new_tokens=max_new_tokens,
                             batch_size=batch_size, progress=progress)
    rows = [QARow(question=it.question, expected=it.expected, reply=reply,
                  correct=score_reply(reply, it.expected, it.choices), in_format=fmt, kind=it.kind, lang=it.lang)
            for it, (reply, fmt) in zip(items, replies)]
    return summarise(rows)


# ----------------------------------------------------------------------------------------------
# perplexity


@torch.no_grad()
def _nll_of_batch(model, ids: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    from .losses import token_logprobs

    logits = model(ids).logits
    logps, mask = token_logprobs(logits, labels)
    return -float(logps.double().sum()), int(mask.sum())


def _pretrain_examples(path: Path, tokenizer, seq_len: int, limit: int | None):
    """Windows of seq_len tokens over the packed documents; consecutive windows share one token,
    so every token after the first is predicted exactly once."""
    stream: list[int] = []
    records = 0
    for _, obj in iter_records(path, "pretrain"):
        stream += [BOS_ID] + tokenizer.encode(obj["text"], add_special_tokens=False) + [EOS_ID]
        while len(stream) >= seq_len:
            window = stream[:seq_len]
            yield window, [IGNORE_INDEX] + window[1:]
            stream = stream[seq_len - 1:]
        records += 1
        if limit is not None and records >= limit:
            break
    if len(stream) >= 2:
        yield stream, [IGNORE_INDEX] + stream[1:]


def _sft_examples(path: Path, tokenizer, seq_len: int, limit: int | None):
    """Each conversation (truncated to seq_len tokens) with only its assistant tokens as targets,
    masked exactly as supervised fine-tuning masks them (datasets.encode_conversation)."""
    records = 0
    for _, obj in iter_records(path, "sft"):
        ids, labels = encode_conversation(obj["conversations"], tokenizer, seq_len)
        if any(lab != IGNORE_INDEX for lab in labels[1:]):
            yield ids, labels
        records += 1
        if limit is not None and records >= limit:
            break


@torch.no_grad()
def perplexity(model, tokenizer, jsonl_file: str | Path, seq_len: int = 256, max_tokens: int | None = None,
               limit: int | None = None, batch_size: int = 8, progress: bool = False) -> tuple[float, float, int]:
    """(perplexity, mean NLL in nats, number of predicted tokens) of `model` on a JSONL file.

    Pretrain schema ({"text"}): documents as bos + text + eos, packed and cut into windows of
    seq_len tokens that overlap by one, so every token after the first is predicted once.
    SFT schema ({"conversations"}): each conversation (truncated to seq_len tokens) scores only
    its assistant tokens. `max_tokens` stops after that many predicted tokens, `limit` after that
    many records (lines).
    """
    path = Path(jsonl_file)
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2, got {seq_len}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    kind = detect_stage(path)
    if kind == "dpo":
        raise EvalError(f'{path}: perplexity needs pretrain ("text") or SFT ("conversations") records, '
                        "not DPO pairs")
    examples = (_pretrain_examples if kind == "pretrain" else _sft_examples)(path, tokenizer, seq_len, limit)
    was_training = model.training
    model.eval()
    device = _model_device(model)
    total_nll, total_n = 0.0, 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_tokens, desc="perplexity", unit="tok")

    def run(batch: list[tuple[list[int], list[int]]]) -> None:
        nonlocal total_nll, total_n
        longest = max(len(x) for x, _ in batch)
        # right padding: with causal attention the real tokens never see the padding
        ids = torch.full((len(batch), longest), PAD_ID, dtype=torch.long)
        labels = torch.full((len(batch), longest), IGNORE_INDEX, dtype=torch.long)
        for r, (x, y) in enumerate(batch):
            ids[r, :len(x)] = torch.tensor(x)
            labels[r, :len(y)] = torch.tensor(y)
        labels[:, 0] = IGNORE_INDEX  # nothing predicts the first token
        if max_tokens is not None:   # drop the targets beyond the token budget
            counted = (labels != IGNORE_INDEX).flatten().cumsum(0).view_as(labels)
            labels[counted > max_tokens - total_n] = IGNORE_INDEX
        nll, n = _nll_of_batch(model, ids.to(device), labels.to(device))
        total_nll += nll
        total_n += n
        if bar is not None:
            bar.update(n)

    try:
        batch: list[tuple[list[int], list[int]]] = []
        for ex in examples:
            batch.append(ex)
            if len(batch) == batch_size:
                run(batch)
                batch = []
                if max_tokens is not None and total_n >= max_tokens:
                    break
        if batch and (max_tokens is None or total_n < max_tokens):
            run(batch)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    if total_n == 0:
        raise EvalError(f"{path}: no tokens to score")
    mean = total_nll / total_n
    return math.exp(mean), mean, total_n

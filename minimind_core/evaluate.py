"""Evaluation (评测): held-out question accuracy and perplexity.

Question accuracy. Each line of an eval file is one question with its answer:

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

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch

from .errors import EvalError
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, render_chat

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


EvalFileError = EvalError  # the older name


def _iter_json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvalFileError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise EvalFileError(f"{path}:{lineno}: expected a JSON object, found {type(obj).__name__}")
            yield lineno, obj


def _check_messages(msgs, where: str, field_name: str = "conversations") -> list[dict]:
    if not isinstance(msgs, list) or not msgs:
        raise EvalFileError(f"{where}: field '{field_name}' must be a non-empty list of messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise EvalFileError(f"{where}: {field_name}[{i}] must be an object with string 'role' and 'content'")
    return msgs


def load_eval_items(path: str | Path, limit: int | None = None) -> list[EvalItem]:
    """Read and validate an eval file; errors name the file, the line and the field."""
    path = Path(path)
    items = []
    for lineno, obj in _iter_json_lines(path):
        where = f"{path}:{lineno}"
        msgs = _check_messages(obj.get("conversations"), where)
        if msgs[0]["role"] != "user":
            raise EvalFileError(f"{where}: conversations[0] must be the user's question, "
                                f"found role {msgs[0]['role']!r}")
        expected = obj.get("expected")
        if not isinstance(expected, str) or not expected.strip():
            raise EvalFileError(f"{where}: field 'expected' must be a non-empty string")
        choices = obj.get("choices", [])
        if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
            raise EvalFileError(f"{where}: field 'choices' must be a list of non-empty strings")
        for key in ("kind", "lang"):
            if key in obj and not isinstance(obj[key], str):
                raise EvalFileError(f"{where}: field '{key}' must be a string")
        reference = msgs[1]["content"] if len(msgs) > 1 and msgs[1]["role"] == "assistant" else None
        items.append(EvalItem(question=msgs[0]["content"], expected=expected, choices=list(choices),
                              kind=obj.get("kind", ""), lang=obj.get("lang", ""), reference=reference,
                              line=lineno))
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise EvalFileError(f"{path}: no questions")
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


def prompt_ids(tokenizer, question: str) -> list[int]:
    """Token ids of the chat prompt for one user question (with the generation prompt)."""
    text = render_chat([{"role": "user", "content": question}], add_generation_prompt=True)
    return tokenizer.encode(text, add_special_tokens=False)


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
        out.append((tokenizer.decode(toks[:-1] if closed else toks, skip_special_tokens=True), closed))
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


def _assistant_targets(tokenizer, messages: list[dict]) -> tuple[list[int], list[bool]]:
    """Token ids of a rendered conversation and which of them are assistant targets (the content,
    the closing <|im_end|> and the newline after it), found through the tokenizer's offsets."""
    spans = []
    pos = 0
    text = render_chat(messages)
    if not messages or messages[0]["role"] != "system":
        pos = len(render_chat([]))  # the default system message
    for m in messages:
        header = f"<|im_start|>{m['role']}\n"
        end = pos + len(header) + len(m["content"]) + len("<|im_end|>\n")
        if m["role"] == "assistant":
            spans.append((pos + len(header), end))
        pos = end
    assert pos == len(text)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    targets = [any(s <= a < e for s, e in spans) for a, _ in offsets]
    return ids, targets


def _file_kind(path: Path) -> str:
    for lineno, obj in _iter_json_lines(path):
        if "text" in obj:
            return "pretrain"
        if "conversations" in obj:
            return "sft"
        raise EvalFileError(f"{path}:{lineno}: expected a 'text' field (pretrain) or 'conversations' (SFT)")
    raise EvalFileError(f"{path}: empty file")


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
    for lineno, obj in _iter_json_lines(path):
        text = obj.get("text")
        if not isinstance(text, str):
            raise EvalFileError(f"{path}:{lineno}: field 'text' must be a string")
        stream += [BOS_ID] + tokenizer.encode(text, add_special_tokens=False) + [EOS_ID]
        while len(stream) >= seq_len:
            window = stream[:seq_len]
            yield window, [-100] + window[1:]
            stream = stream[seq_len - 1:]
        records += 1
        if limit is not None and records >= limit:
            break
    if len(stream) >= 2:
        yield stream, [-100] + stream[1:]


def _sft_examples(path: Path, tokenizer, seq_len: int, limit: int | None):
    """Each conversation (truncated to seq_len tokens) with only its assistant tokens as targets."""
    records = 0
    for lineno, obj in _iter_json_lines(path):
        msgs = _check_messages(obj.get("conversations"), f"{path}:{lineno}")
        ids, targets = _assistant_targets(tokenizer, msgs)
        ids, targets = ids[:seq_len], targets[:seq_len]
        labels = [t if keep else -100 for t, keep in zip(ids, targets)]
        if any(lab != -100 for lab in labels[1:]):
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
    kind = _file_kind(path)
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
        labels = torch.full((len(batch), longest), -100, dtype=torch.long)
        for r, (x, y) in enumerate(batch):
            ids[r, :len(x)] = torch.tensor(x)
            labels[r, :len(y)] = torch.tensor(y)
        labels[:, 0] = -100          # nothing predicts the first token
        if max_tokens is not None:   # drop the targets beyond the token budget
            counted = (labels != -100).flatten().cumsum(0).view_as(labels)
            labels[counted > max_tokens - total_n] = -100
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
        raise EvalFileError(f"{path}: no tokens to score")
    mean = total_nll / total_n
    return math.exp(mean), mean, total_n

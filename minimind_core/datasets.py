"""PyTorch datasets for every training stage, built on the streaming readers of `jsonl`.

    pretrain (预训练), packed    build_token_cache(...) -> TokenCache; PackedDataset(cache, seq_len)
    pretrain, padded (MiniMind)  PaddedPretrainDataset(jsonl_path, tokenizer, seq_len)
    SFT / LoRA / distillation    encode_conversation(...); SFTDataset(...); collate_pad(...)
    DPO                          encode_dpo_pair(...); DPODataset(...); collate_dpo(...)

Items hold `input_ids` and `labels` of the same length; the model shifts the labels itself
(Hugging Face convention), and -100 marks a position that is not trained.

Nothing loads a whole JSONL file: the packed dataset reads a token file through a memory map,
and the other datasets read line i on demand through a `LineIndex` of byte offsets.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .chat import render_with_spans
from .errors import DataError
from .jsonl import BadLines, LineIndex, check_on_error, example, iter_records
from .losses import IGNORE_INDEX
from .tokenizer import BOS_ID, EOS_ID, PAD_ID

CACHE_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# tokenizer helpers

def _backend(tokenizer):
    """The Rust `tokenizers.Tokenizer` behind a transformers fast tokenizer (or the object itself)."""
    return getattr(tokenizer, "backend_tokenizer", tokenizer)


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's full serialised form (vocab, merges, special tokens, settings)."""
    return hashlib.sha256(_backend(tokenizer).to_str().encode("utf-8")).hexdigest()


def _vocab_size(tokenizer) -> int:
    return _backend(tokenizer).get_vocab_size(with_added_tokens=True)


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of `text`, no automatic specials (special tokens written in the text still count)."""
    return _backend(tokenizer).encode(text, add_special_tokens=False).ids


# ---------------------------------------------------------------------------------------------
# pretraining: packed token cache

class TokenCache:
    """A tokenized pretraining corpus: one flat token file (memory-mapped) plus its JSON meta.

    `tokens` is a read-only numpy memmap (uint16 when the vocabulary has fewer than 65536
    tokens, else uint32) holding every document as bos + text + eos, back to back.
    """

    def __init__(self, tokens_path, meta: dict):
        self.path = Path(tokens_path)
        self.meta_path = _meta_path(self.path)
        self.meta = meta
        self.n_tokens = int(meta["n_tokens"])
        self.n_docs = int(meta["n_docs"])
        self.dtype = np.dtype(meta["dtype"])
        if self.n_tokens:
            self.tokens = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.n_tokens,))
        else:
            self.tokens = np.zeros(0, dtype=self.dtype)

    @classmethod
    def open(cls, tokens_path) -> "TokenCache":
        tokens_path = Path(tokens_path)
        meta = json.loads(_meta_path(tokens_path).read_text(encoding="utf-8"))
        return cls(tokens_path, meta)

    def __len__(self):
        return self.n_tokens

    def __repr__(self):
        return (f"TokenCache({self.path.name}: {self.n_docs:,} documents, {self.n_tokens:,} tokens, "
                f"{self.dtype.name})")

    def __getstate__(self):  # DataLoader workers reopen the memmap instead of pickling it
        d = dict(self.__dict__)
        d.pop("tokens")
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self.tokens = (np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.n_tokens,))
                       if self.n_tokens else np.zeros(0, dtype=self.dtype))


def _meta_path(tokens_path: Path) -> Path:
    return tokens_path.with_name(tokens_path.name[: -len(".bin")] + ".json")


def default_cache_dir() -> Path:
    from .paths import DATA_DIR

    return DATA_DIR / "cache"


def cache_paths(jsonl_path, tokenizer, cache_dir=None) -> tuple[Path, Path]:
    """(tokens file, meta file) for this source file and tokenizer.

    The name holds the source's stem, a hash of its absolute path and the tokenizer's
    fingerprint, so caches of different files or tokenizers live side by side.
    """
    src = Path(jsonl_path).resolve()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    src_hash = hashlib.sha256(str(src).encode("utf-8")).hexdigest()[:8]
    name = f"{src.stem}-{src_hash}-tok{tokenizer_fingerprint(tokenizer)[:12]}.tokens.bin"
    tokens_path = cache_dir / name
    return tokens_path, _meta_path(tokens_path)


def _cache_is_valid(tokens_path: Path, meta_path: Path, expected: dict) -> dict | None:
    if not (tokens_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    for k, v in expected.items():
        if meta.get(k) != v:
            return None
    if tokens_path.stat().st_size != int(meta["n_tokens"]) * np.dtype(meta["dtype"]).itemsize:
        return None
    return meta


def _encode_chunk(args):
    """Worker: token ids of a list of documents, each wrapped as bos + text + eos."""
    texts, dtype = args
    encs = _WORKER_TOK["tok"].encode_batch(texts, add_special_tokens=False)
    return _pack(encs, dtype), len(texts)


_WORKER_TOK = {}
# fork where the platform has it: no `if __name__ == "__main__"` guard needed in scripts
_MP_START = "fork" if sys.platform.startswith("linux") else "spawn"


def _init_worker(tok_json: str):
    from tokenizers import Tokenizer

    _WORKER_TOK["tok"] = Tokenizer.from_str(tok_json)


def _pack(encs, dtype) -> np.ndarray:
    lengths = [len(e.ids) + 2 for e in encs]
    out = np.empty(sum(lengths), dtype=dtype)
    pos = 0
    for e, n in zip(encs, lengths):
        out[pos] = BOS_ID
        out[pos + 1: pos + n - 1] = e.ids
        out[pos + n - 1] = EOS_ID
        pos += n
    return out


def _bounded_imap(pool, func, items, window: int):
    """Like pool.imap, in order, but with at most `window` tasks in flight (bounded memory)."""
    from collections import deque

    pending = deque()
    for item in items:
        pending.append(pool.apply_async(func, (item,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _text_chunks(src: Path, on_error: str, report: BadLines, chunk_docs: int, bar):
    """Lists of up to `chunk_docs` validated texts, streamed; advances `bar` by the bytes read."""
    unreported = 0  # bytes read since the bar last moved

    def count(n_bytes):
        nonlocal unreported
        unreported += n_bytes

    buf = []
    for _, rec in iter_records(src, "pretrain", on_error=on_error, report=report, progress=count):
        buf.append(rec["text"])
        if len(buf) == chunk_docs:
            bar.update(unreported)
            unreported = 0
            yield buf
            buf = []
    bar.update(unreported)
    if buf:
        yield buf


def _write_tokens(out, chunks, tokenizer, dtype, num_workers: int) -> tuple[int, int]:
    """Tokenize the text chunks and append every document, as bos + text + eos, to the open
    file `out`; returns (documents, tokens).

    One worker encodes in this process with the tokenizer's batch encoding, which the Rust library
    already spreads over all cores; N > 1 workers are processes that each encode whole chunks.
    """
    n_docs = n_tokens = 0
    pool = None
    try:
        if num_workers > 1:
            import multiprocessing as mp

            pool = mp.get_context(_MP_START).Pool(num_workers, initializer=_init_worker,
                                                  initargs=(_backend(tokenizer).to_str(),))
            arrays = _bounded_imap(pool, _encode_chunk, ((c, dtype) for c in chunks), window=2 * num_workers)
        else:
            backend = _backend(tokenizer)
            arrays = ((_pack(backend.encode_batch(c, add_special_tokens=False), dtype), len(c)) for c in chunks)
        for arr, docs in arrays:
            arr.tofile(out)
            n_tokens += len(arr)
            n_docs += docs
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return n_docs, n_tokens


def _cache_key(src: Path, tokenizer) -> dict:
    """What a cache must match to be reused: the cache format, the source file (path, size,
    mtime), the tokenizer (sha256 of its serialised form) and the token dtype (uint16 when the
    vocabulary has fewer than 65536 tokens, else uint32)."""
    st = src.stat()
    dtype = np.dtype(np.uint16 if _vocab_size(tokenizer) < 65536 else np.uint32)
    return {
        "format": CACHE_FORMAT,
        "source": str(src.resolve()),
        "source_size": st.st_size,
        "source_mtime_ns": st.st_mtime_ns,
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "dtype": dtype.name,
    }


def _reusable_cache(src: Path, tokens_path: Path, meta_path: Path, key: dict, on_error: str) -> TokenCache | None:
    """The cache on disk when it matches `key`; None when it must be (re)built. A cache that left
    bad lines out is not reused with on_error="raise", which must raise on the first of them."""
    meta = _cache_is_valid(tokens_path, meta_path, key)
    if meta is not None and not (meta.get("bad_lines", 0) and on_error == "raise"):
        if meta.get("bad_lines"):
            print(f"{src}: cached tokens leave out {meta['bad_lines']} bad lines "
                  f"(first: {meta.get('first_bad_line')})", file=sys.stderr)
        return TokenCache(tokens_path, meta)
    if tokens_path.exists() or meta_path.exists():
        print(f"{src}: source or tokenizer changed since {tokens_path.name} was built; rebuilding",
              file=sys.stderr)
    return None


def _build_cache(src: Path, tokens_path: Path, meta_path: Path, key: dict, tokenizer, *, num_workers: int,
                 on_error: str, chunk_docs: int, progress: bool) -> dict:
    """Tokenize `src` into `tokens_path` and write its meta; returns the meta.

    Both files are written under temporary names and renamed, the meta last, so an interrupted
    build never leaves a cache that looks complete.
    """
    from tqdm.auto import tqdm

    tokens_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_tokens = tokens_path.with_name(f".{tokens_path.name}.{os.getpid()}.tmp")
    tmp_meta = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
    report = BadLines()
    t0 = time.time()
    try:
        with tqdm(total=key["source_size"], unit="B", unit_scale=True, desc=f"tokenizing {src.name}",
                  mininterval=1.0, disable=not progress) as bar, open(tmp_tokens, "wb") as f:
            chunks = _text_chunks(src, on_error, report, chunk_docs, bar)
            n_docs, n_tokens = _write_tokens(f, chunks, tokenizer, np.dtype(key["dtype"]), num_workers)
            f.flush()
            os.fsync(f.fileno())
        if n_docs == 0:
            raise DataError(src, 0, "no documents; expected at least one line like {\"text\": \"...\"}")
        meta = {
            **key,
            "n_docs": n_docs,
            "n_tokens": n_tokens,
            "vocab_size": _vocab_size(tokenizer),
            "bos_id": BOS_ID,
            "eos_id": EOS_ID,
            "document": "bos + text + eos",
            "bad_lines": report.count,
            "first_bad_line": report.messages[0] if report.messages else None,
            "blank_lines": report.blank,
            "build_seconds": round(time.time() - t0, 2),
            "num_workers": num_workers,
        }
        tmp_meta.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        if meta_path.exists():
            meta_path.unlink()  # an old meta must never describe the new tokens
        os.replace(tmp_tokens, tokens_path)
        os.replace(tmp_meta, meta_path)  # the meta, written last, marks the cache complete
    finally:
        for p in (tmp_tokens, tmp_meta):
            if p.exists():
                p.unlink()
    if report.count:
        print(f"{src}: {report.summary()}", file=sys.stderr)
    return meta


def build_token_cache(jsonl_path, tokenizer, cache_dir=None, num_workers=None, on_error="raise",
                      rebuild: bool = False, chunk_docs: int = 2048,
                      progress: bool = True) -> TokenCache:
    """Tokenize a pretraining JSONL file once into a flat token file; reuse it afterwards.

    Each document becomes bos + text + eos (`<|im_start|>` text `<|im_end|>`, as MiniMind wraps
    pretraining text); all documents are concatenated. The cache (default DATA_DIR/"cache") is
    reused while the source file (size, mtime) and the tokenizer (sha256 of its serialised form)
    are unchanged, and rebuilt otherwise. Files are written to a temporary name and renamed, so
    an interrupted build never leaves a half-written cache.

    `num_workers`: None, 0 or 1 (default) tokenizes in this process with the tokenizer's batch
    encoding, which the Rust library already spreads over all cores; N > 1 uses N worker
    processes instead (each encoding whole chunks). Parsing JSON costs about 1/25 of tokenizing,
    so one reading process keeps the tokenizer busy. `on_error="skip"` leaves bad
    lines out and prints how many; the count is kept in the meta (`bad_lines`).
    """
    src = Path(jsonl_path)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file (download it with `python -m minimind_core data download`)")
    tokens_path, meta_path = cache_paths(src, tokenizer, cache_dir)
    key = _cache_key(src, tokenizer)
    if not rebuild:
        cache = _reusable_cache(src, tokens_path, meta_path, key, on_error)
        if cache is not None:
            return cache
    meta = _build_cache(src, tokens_path, meta_path, key, tokenizer, num_workers=int(num_workers or 1),
                        on_error=on_error, chunk_docs=chunk_docs, progress=progress)
    return TokenCache(tokens_path, meta)


class PackedDataset(Dataset):
    """Contiguous, non-overlapping blocks of `seq_len` tokens from a TokenCache (packing).

    Documents run into each other inside a block (each starts with bos and ends with eos), so no
    position is padding. Item i is {"input_ids": LongTensor[seq_len], "labels": the same tensor}:
    the model shifts the labels itself. The tail shorter than a block is left out and reported in
    `dropped_tokens`.
    """

    def __init__(self, cache: TokenCache, seq_len: int):
        if seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, got {seq_len}")
        self.cache = cache
        self.seq_len = seq_len
        self.n_blocks = cache.n_tokens // seq_len
        self.dropped_tokens = cache.n_tokens - self.n_blocks * seq_len  # 0 blocks if shorter than one

    def __len__(self):
        return self.n_blocks

    def __getitem__(self, i):
        if i < 0:
            i += self.n_blocks
        if not 0 <= i < self.n_blocks:
            raise IndexError(f"block {i} out of range ({self.n_blocks} blocks)")
        start = i * self.seq_len
        ids = torch.from_numpy(self.cache.tokens[start:start + self.seq_len].astype(np.int64))
        return {"input_ids": ids, "labels": ids}

    def tail(self) -> np.ndarray:
        """The tokens after the last whole block (the ones `dropped_tokens` counts)."""
        return np.asarray(self.cache.tokens[self.n_blocks * self.seq_len:])

    def __repr__(self):
        return (f"PackedDataset({self.n_blocks:,} blocks of {self.seq_len} tokens; "
                f"{self.dropped_tokens} tail tokens dropped)")


# ---------------------------------------------------------------------------------------------
# lazy datasets over a JSONL file

class _JsonlDataset(Dataset):
    """Records of a JSONL file read on demand through a LineIndex.

    `scan=True` (default) validates the whole file once, streaming, when the dataset is made:
    with on_error="raise" the first bad line raises a DataError before any training starts; with
    "skip" bad lines are left out and counted in `bad_lines` (a BadLines; its summary is
    printed). `scan=False` starts at once and raises a DataError when a bad line is read.
    """

    stage = "sft"

    def __init__(self, jsonl_path, on_error: str = "raise", scan: bool = True, progress: bool = True):
        check_on_error(on_error)
        self.path = Path(jsonl_path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        self.on_error = on_error
        self.index = LineIndex(self.path)
        self.bad_lines = BadLines()
        if scan:
            from tqdm.auto import tqdm

            keep = []
            records = iter_records(self.path, self.stage, on_error=on_error, report=self.bad_lines)
            for line_no, rec in tqdm(records, total=len(self.index.nonblank), mininterval=1.0,
                                     desc=f"checking {self.path.name}", unit=" lines",
                                     disable=not progress or len(self.index.nonblank) < 100_000):
                if self._keep(line_no, rec):
                    keep.append(line_no - 1)
            self.lines = np.asarray(keep, dtype=np.int64)
            if self.bad_lines.count:
                print(f"{self.path}: {self.bad_lines.summary()}", file=sys.stderr)
        else:
            if on_error == "skip":
                raise ValueError("on_error='skip' needs scan=True (the bad lines must be known up front)")
            self.lines = self.index.nonblank
        if len(self.lines) == 0:
            raise DataError(self.path, 0, f"no usable records; expected lines like {example(self.stage)}")

    def _keep(self, line_no: int, rec: dict) -> bool:
        return True

    def __len__(self):
        return len(self.lines)

    def record(self, i: int) -> dict:
        """The validated record of item i (raises DataError naming the line when it is bad)."""
        j = int(self.lines[i])
        rec = self.index.record(j, self.stage)
        if rec is None:
            raise DataError(self.path, j + 1, "blank line where a record was indexed; "
                                              "the file changed after the dataset was made")
        return rec

    def line_no(self, i: int) -> int:
        """1-based line number of item i in the file."""
        return int(self.lines[i]) + 1


class PaddedPretrainDataset(_JsonlDataset):
    """MiniMind-style pretraining samples: one document per sample, padded (for comparison).

    Item i: bos + text + eos, the text truncated so that the whole fits `seq_len`, then padded
    with pad id 0 to `seq_len`; labels are the ids with -100 at the padding. Compare
    `padding_fraction()` with PackedDataset, which has none.
    """

    stage = "pretrain"

    def __init__(self, jsonl_path, tokenizer, seq_len: int, on_error: str = "raise", scan: bool = True,
                 progress: bool = True):
        if seq_len < 3:
            raise ValueError(f"seq_len must be at least 3, got {seq_len}")
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        super().__init__(jsonl_path, on_error=on_error, scan=scan, progress=progress)

    def __getitem__(self, i):
        ids = encode_text(self.tokenizer, self.record(i)["text"])[: self.seq_len - 2]
        ids = [BOS_ID] + ids + [EOS_ID]
        n = len(ids)
        input_ids = torch.full((self.seq_len,), PAD_ID, dtype=torch.long)
        input_ids[:n] = torch.tensor(ids, dtype=torch.long)
        labels = input_ids.clone()
        labels[n:] = IGNORE_INDEX
        return {"input_ids": input_ids, "labels": labels}

    def padding_fraction(self, n: int = 1000, seed: int = 0) -> float:
        """Fraction of positions that are padding, over `n` items drawn at random (all if fewer)."""
        idx = np.arange(len(self))
        if n < len(idx):
            idx = np.random.default_rng(seed).choice(idx, size=n, replace=False)
        pad = sum(int((self[int(i)]["labels"] == IGNORE_INDEX).sum()) for i in idx)
        return pad / (len(idx) * self.seq_len)


# ---------------------------------------------------------------------------------------------
# SFT: the loss mask over the rendered chat (minimind_core.chat)

def encode_conversation(messages: Sequence[dict], tokenizer, max_len: int | None = None
                        ) -> tuple[list[int], list[int]]:
    """Token ids and labels of a conversation, for supervised fine-tuning (监督微调).

    The whole rendered text is tokenized once (with character offsets); a token is trained
    (label = its id) when it starts inside an assistant span, i.e. the assistant content, the
    `<|im_end|>` after it and the newline after that. System and user text, role headers
    (`<|im_start|>assistant\\n`) get -100. Every assistant turn is trained. Both lists are cut to
    `max_len` tokens when given.
    """
    text, spans = render_with_spans(messages)
    enc = _backend(tokenizer).encode(text, add_special_tokens=False)
    ids = list(enc.ids)
    labels = [IGNORE_INDEX] * len(ids)
    k = 0
    for t, (start, _end) in enumerate(enc.offsets):
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        if k == len(spans):
            break
        if spans[k][0] <= start:
            labels[t] = ids[t]
    if max_len is not None:
        ids, labels = ids[:max_len], labels[:max_len]
    return ids, labels


def _has_target(labels) -> bool:
    # position 0 is never a target once the model shifts the labels
    return any(l != IGNORE_INDEX for l in labels[1:])


def _target_within(messages, tokenizer, seq_len: int) -> bool:
    """Whether a trained token survives truncation to seq_len; tokenizes only when it must."""
    text, spans = render_with_spans(messages)
    # a byte-level token covers at least one byte, so the first trained token sits at most at
    # index len(prefix in bytes): short prefixes need no tokenizing
    if len(text[: spans[0][0]].encode("utf-8")) <= seq_len - 1:
        return True
    return _has_target(encode_conversation(messages, tokenizer, seq_len)[1])


class SFTDataset(_JsonlDataset):
    """Supervised fine-tuning conversations (also LoRA and distillation data), read lazily.

    Item i: {"input_ids", "labels"}, unpadded LongTensors of at most `seq_len` tokens (batch
    them with `collate_pad`). Conversations whose trained tokens all fall beyond `seq_len` are
    found by the scan: `no_target="drop"` leaves them out and prints how many, `"raise"` raises a
    DataError naming the line. `stats`: {"no_target": dropped at the scan, "truncated": items cut
    to seq_len so far in this process}.
    """

    stage = "sft"

    def __init__(self, jsonl_path, tokenizer, seq_len: int, on_error: str = "raise",
                 no_target: str = "drop", scan: bool = True, progress: bool = True):
        if no_target not in ("drop", "raise"):
            raise ValueError(f"no_target must be 'drop' or 'raise', got {no_target!r}")
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.no_target = no_target
        self.stats = {"no_target": 0, "truncated": 0}
        self.first_no_target = None
        super().__init__(jsonl_path, on_error=on_error, scan=scan, progress=progress)
        if self.stats["no_target"]:
            print(f"{self.path}: dropped {self.stats['no_target']} conversations with no assistant "
                  f"token within seq_len {seq_len} (first: line {self.first_no_target})", file=sys.stderr)

    def _conversations(self, rec):
        return [rec["conversations"]]

    def _keep(self, line_no, rec):
        for conv in self._conversations(rec):
            if not _target_within(conv, self.tokenizer, self.seq_len):
                if self.no_target == "raise":
                    raise DataError(self.path, line_no, f"no assistant token within the first "
                                    f"{self.seq_len} tokens; expected a shorter prompt or a larger seq_len")
                self.stats["no_target"] += 1
                if self.first_no_target is None:
                    self.first_no_target = line_no
                return False
        return True

    def _encode(self, conv, i):
        ids, labels = encode_conversation(conv, self.tokenizer)
        if len(ids) > self.seq_len:
            self.stats["truncated"] += 1
            ids, labels = ids[: self.seq_len], labels[: self.seq_len]
        if not _has_target(labels):  # reachable only with scan=False
            raise DataError(self.path, self.line_no(i), f"no assistant token within the first "
                            f"{self.seq_len} tokens; expected a shorter prompt or a larger seq_len")
        return torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)

    def __getitem__(self, i):
        ids, labels = self._encode(self.record(i)["conversations"], i)
        return {"input_ids": ids, "labels": labels}


def collate_pad(batch: Sequence[dict], pad_id: int = PAD_ID, pad_to: int | None = None) -> dict:
    """Pad a list of SFT items to one length: input_ids with `pad_id`, labels with -100.

    Returns {"input_ids", "labels", "attention_mask"} ([B, T] each; mask 1 on real tokens).
    T is the longest item, or `pad_to` for fixed shapes. Use with a DataLoader as
    `collate_fn=collate_pad` or `functools.partial(collate_pad, pad_to=512)`.
    """
    return _pad(batch, "input_ids", "labels", pad_id, pad_to, prefix="")


def _pad(batch, ids_key, labels_key, pad_id, length, prefix, length_of=None):
    lengths = [len(b[ids_key]) for b in batch]
    T = max(lengths) if length is None else length
    if max(lengths) > T:
        raise ValueError(f"an item has {max(lengths)} tokens, more than pad_to={T}")
    B = len(batch)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for r, (b, n) in enumerate(zip(batch, lengths)):
        input_ids[r, :n] = torch.as_tensor(b[ids_key])
        labels[r, :n] = torch.as_tensor(b[labels_key])
        mask[r, :n] = 1
    return {f"{prefix}input_ids": input_ids, f"{prefix}labels": labels, f"{prefix}attention_mask": mask}


# ---------------------------------------------------------------------------------------------
# DPO

def encode_dpo_pair(record: dict, tokenizer, max_len: int | None) -> dict:
    """{"chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"} as lists;
    masks exactly as `encode_conversation` (assistant tokens only)."""
    out = {}
    for side in ("chosen", "rejected"):
        ids, labels = encode_conversation(record[side], tokenizer, max_len)
        out[f"{side}_input_ids"], out[f"{side}_labels"] = ids, labels
    return out


class DPODataset(SFTDataset):
    """Preference pairs {"chosen": [...], "rejected": [...]}, read lazily.

    Item i: {"chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"},
    unpadded LongTensors of at most `seq_len` tokens; batch them with `collate_dpo`. A pair is
    dropped (or raises, `no_target="raise"`) when either side has no assistant token within
    seq_len.
    """

    stage = "dpo"

    def _conversations(self, rec):
        return [rec["chosen"], rec["rejected"]]

    def __getitem__(self, i):
        rec = self.record(i)
        out = {}
        for side in ("chosen", "rejected"):
            out[f"{side}_input_ids"], out[f"{side}_labels"] = self._encode(rec[side], i)
        return out


def collate_dpo(batch: Sequence[dict], pad_id: int = PAD_ID, pad_to: int | None = None) -> dict:
    """Pad chosen and rejected sides to one common length T (the longest of both, or `pad_to`).

    Returns chosen_/rejected_ input_ids, labels and attention_mask, each [B, T], so that
    `torch.cat([chosen, rejected])` runs both as one batch of 2B.
    """
    if pad_to is None:
        pad_to = max(max(len(b["chosen_input_ids"]), len(b["rejected_input_ids"])) for b in batch)
    out = _pad(batch, "chosen_input_ids", "chosen_labels", pad_id, pad_to, prefix="chosen_")
    out.update(_pad(batch, "rejected_input_ids", "rejected_labels", pad_id, pad_to, prefix="rejected_"))
    return out

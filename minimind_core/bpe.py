"""A small byte-level BPE (字节对编码) in pure Python, for learning how a tokenizer is made.

Text becomes UTF-8 bytes (ids 0-255). Training repeatedly finds the most frequent adjacent pair
of ids and replaces it everywhere by a new id: merge `i` creates id `256 + i`. The list of merged
pairs, in training order, is the whole tokenizer:

    merges = train_bpe("low lower lowest", 3)      # [(108, 111), (256, 119), (32, 257)]
    ids = encode("lowest", merges)
    decode(ids, merges) == "lowest"

Ties between pairs of equal count go to the pair seen first in the text, so training is
deterministic. The course's real tokenizer (`minimind_core.tokenizer`, Hugging Face `tokenizers`)
does the same thing at speed, and first splits text into words so that merges never cross a
word boundary; this module merges across the whole text to keep the idea bare.
"""
from __future__ import annotations

import codecs
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

N_BYTES = 256


def text_to_bytes(text: str) -> list[int]:
    """The UTF-8 bytes of `text` as a list of ints in 0..255 ('中' -> [228, 184, 173])."""
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    return list(text.encode("utf-8"))


def get_pair_counts(ids: Sequence[int]) -> dict[tuple[int, int], int]:
    """How often each adjacent pair occurs in `ids`: {(a, b): count}, in order of first appearance.

    Overlapping pairs count separately: [1, 1, 1] has the pair (1, 1) twice.
    """
    return dict(Counter(zip(ids, ids[1:])))


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids`, scanning left to right, by `new_id`.

    Occurrences do not overlap: merging (1, 1) in [1, 1, 1] gives [new_id, 1].
    """
    a, b = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


@dataclass(frozen=True)
class MergeStep:
    """One training step: `pair` (seen `count` times) became `new_id`, spelling `token`;
    the text is then `length` ids long."""

    new_id: int
    pair: tuple[int, int]
    count: int
    token: bytes
    length: int


def train_bpe_steps(text: str, n_merges: int, min_count: int = 2) -> list[MergeStep]:
    """Train BPE on `text` and return every step (for tables and plots of the merge table growing).

    Stops early when no pair occurs at least `min_count` times (merging a pair seen once
    does not help on other text).
    """
    if not isinstance(n_merges, int) or n_merges < 0:
        raise ValueError(f"n_merges must be a non-negative int, got {n_merges!r}")
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    ids = text_to_bytes(text)
    token = {i: bytes([i]) for i in range(N_BYTES)}
    steps = []
    for i in range(n_merges):
        counts = get_pair_counts(ids)
        if not counts:
            break
        pair = max(counts, key=counts.get)      # first of the most frequent pairs
        if counts[pair] < min_count:
            break
        new_id = N_BYTES + i
        ids = merge_pair(ids, pair, new_id)
        token[new_id] = token[pair[0]] + token[pair[1]]
        steps.append(MergeStep(new_id, pair, counts[pair], token[new_id], len(ids)))
    return steps


def train_bpe(text: str, n_merges: int, min_count: int = 2) -> list[tuple[int, int]]:
    """Learn up to `n_merges` merges from `text`: the merged pairs in order (merge i -> id 256 + i)."""
    return [s.pair for s in train_bpe_steps(text, n_merges, min_count)]


def _check_merges(merges: Sequence[tuple[int, int]]) -> None:
    for i, pair in enumerate(merges):
        if len(pair) != 2:
            raise ValueError(f"merge {i}: expected a pair of ids, got {pair!r}")
        for t in pair:
            if not 0 <= t < N_BYTES + i:
                raise ValueError(f"merge {i} ({pair!r}): id {t} does not exist yet "
                                 f"(ids 0..{N_BYTES + i - 1} exist before merge {i})")


def encode(text: str, merges: Sequence[tuple[int, int]]) -> list[int]:
    """Token ids of `text`: its bytes, then each merge applied in training order."""
    _check_merges(merges)
    ids = text_to_bytes(text)
    rank = {tuple(p): i for i, p in enumerate(merges)}
    while len(ids) >= 2:
        # the earliest-learnt merge present in the sequence goes next (the same result as applying
        # every merge in order, in fewer passes)
        pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, len(merges)))
        if pair not in rank:
            break
        ids = merge_pair(ids, pair, N_BYTES + rank[pair])
    return ids


def vocab(merges: Sequence[tuple[int, int]]) -> dict[int, bytes]:
    """The bytes each id stands for: 0-255 themselves, then one entry per merge."""
    _check_merges(merges)
    table = {i: bytes([i]) for i in range(N_BYTES)}
    for i, (a, b) in enumerate(merges):
        table[N_BYTES + i] = table[a] + table[b]
    return table


def decode(ids: Iterable[int], merges: Sequence[tuple[int, int]]) -> str:
    """The text of `ids`. Bytes that are not valid UTF-8 (a cut character) become '\\ufffd'."""
    table = vocab(merges)
    out = bytearray()
    for pos, i in enumerate(ids):
        if i not in table:
            raise ValueError(f"id {i} at position {pos} is not in the vocabulary "
                             f"(0..{len(table) - 1})")
        out += table[i]
    return out.decode("utf-8", errors="replace")


def stream_decode(pieces: Iterable[bytes]) -> list[str]:
    """Decode a stream of token byte strings the way a chat window prints tokens as they come.

    A Chinese character takes three bytes, and a token may hold only some of them. Each entry
    of the result is the text that can be shown once that piece has arrived: complete characters
    only, the bytes of an unfinished character held back until the rest arrives. Bytes that can
    never be valid UTF-8 show as '\\ufffd'. Joining the result gives `b"".join(pieces)` decoded
    with errors="replace".
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces = list(pieces)
    out = [decoder.decode(bytes(p)) for p in pieces]
    tail = decoder.decode(b"", final=True)      # an unfinished character at the very end
    if tail:
        if out:
            out[-1] += tail
        else:
            out.append(tail)
    return out


__all__ = ["text_to_bytes", "get_pair_counts", "merge_pair", "MergeStep", "train_bpe_steps", "train_bpe",
           "encode", "vocab", "decode", "stream_decode", "N_BYTES"]

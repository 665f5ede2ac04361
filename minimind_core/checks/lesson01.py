"""Checks for lesson 01 (bytes, UTF-8 and byte-level BPE).

    from minimind_core.checks import lesson01 as checks
    checks.check_utf8_bytes(utf8_bytes)              # utf8_bytes(text) -> list[int]
    checks.check_get_pair_counts(get_pair_counts)    # get_pair_counts(ids) -> {(a, b): count}
    checks.check_merge_pair(merge_pair)              # merge_pair(ids, pair, new_id) -> list[int]
    checks.check_encode(encode)                      # encode(text, merges) -> list[int]
    checks.check_stream_decode(stream_decode)        # stretch: stream_decode(pieces) -> list[str]

Each check compares with `minimind_core.bpe` on fixed and seeded random inputs, edge cases included.
"""
from __future__ import annotations

import random

from .. import bpe
from . import CheckFailed, call_learner, check, expect_equal

_CORPUS = ("the cat sat on the mat. the cat ate the rat. 猫坐在垫子上。猫吃了老鼠。 "
           "low lower lowest newer newest. 你好，世界！") * 4


def _as_int_list(got, what: str) -> list[int]:
    if isinstance(got, (bytes, bytearray)):
        raise CheckFailed(f"{what}: expected a list of ints, got {type(got).__name__} (wrap it in list(...))")
    if not isinstance(got, (list, tuple)):
        raise CheckFailed(f"{what}: expected a list of ints, got {type(got).__name__}")
    for i, x in enumerate(got):
        if not isinstance(x, int) or isinstance(x, bool):
            raise CheckFailed(f"{what}: item {i} is {type(x).__name__} {x!r}, expected an int")
    return list(got)


def _first_difference(got: list, expected: list, what: str) -> None:
    if got == expected:
        return
    for i, (g, e) in enumerate(zip(got, expected)):
        if g != e:
            raise CheckFailed(f"{what}: expected {_short(expected)}, got {_short(got)} "
                              f"(first difference at position {i}: expected {e!r}, got {g!r})")
    raise CheckFailed(f"{what}: expected {len(expected)} items {_short(expected)}, got {len(got)} {_short(got)}")


def _short(xs, n: int = 12) -> str:
    xs = list(xs)
    return repr(xs) if len(xs) <= n else repr(xs[:n])[:-1] + ", ...]"


# --------------------------------------------------------------------------------------------

@check("UTF-8 bytes")
def check_utf8_bytes(utf8_bytes):
    for text in ("hello", "中", "你好，MiniMind!", "é😀", "", "a\nb"):
        got = _as_int_list(call_learner(utf8_bytes, text), f"utf8_bytes({text!r})")
        expected = bpe.text_to_bytes(text)
        if got != expected and got == [ord(c) for c in text]:
            raise CheckFailed(f"utf8_bytes({text!r}): you returned code points (ord), {got}; UTF-8 writes "
                              f"each as 1-4 bytes: {expected} (use text.encode('utf-8'))")
        _first_difference(got, expected, f"utf8_bytes({text!r})")
    return "correct: 1 byte for ASCII, 3 for a Chinese character, 4 for an emoji"


@check("count pairs")
def check_get_pair_counts(get_pair_counts):
    rng = random.Random(0)
    cases = [[1, 2, 3, 1, 2], [1, 1, 1], [7], [], [5, 6, 5, 6, 5, 6, 7],
             [rng.randrange(6) for _ in range(60)], bpe.text_to_bytes("你好你好")]
    for ids in cases:
        got = call_learner(get_pair_counts, list(ids))
        if not isinstance(got, dict):
            raise CheckFailed(f"get_pair_counts({_short(ids)}): expected a dict {{(a, b): count}}, "
                              f"got {type(got).__name__}")
        got = dict(got)
        expected = bpe.get_pair_counts(ids)
        if ids == [1, 1, 1] and got.get((1, 1)) == 1:
            raise CheckFailed("get_pair_counts([1, 1, 1]): expected {(1, 1): 2}, got {(1, 1): 1}: count every "
                              "adjacent position, overlapping pairs included (zip(ids, ids[1:]))")
        bad_keys = [k for k in got if not (isinstance(k, tuple) and len(k) == 2)]
        if bad_keys:
            raise CheckFailed(f"get_pair_counts({_short(ids)}): keys must be (a, b) tuples, got {bad_keys[0]!r}")
        if got != expected:
            for k in list(expected) + list(got):
                if got.get(k) != expected.get(k):
                    raise CheckFailed(f"get_pair_counts({_short(ids)}): pair {k} expected count "
                                      f"{expected.get(k, 0)}, got {got.get(k, 0)}")
    return "correct: every adjacent pair counted, overlaps included"


@check("merge one pair")
def check_merge_pair(merge_pair):
    rng = random.Random(1)
    cases = [([1, 2, 3, 1, 2], (1, 2), 9), ([1, 1, 1], (1, 1), 9), ([1, 1, 1, 1], (1, 1), 9),
             ([3, 4, 5], (4, 5), 256), ([3, 4, 5], (5, 3), 256), ([], (1, 2), 256), ([8], (8, 8), 256),
             ([rng.randrange(4) for _ in range(50)], (2, 3), 300)]
    for ids, pair, new_id in cases:
        what = f"merge_pair({_short(ids)}, {pair}, {new_id})"
        arg = list(ids)
        got = _as_int_list(call_learner(merge_pair, arg, pair, new_id), what)
        if arg != ids:
            raise CheckFailed(f"{what}: your function changed its input list; return a new list instead")
        expected = bpe.merge_pair(ids, pair, new_id)
        if got != expected and ids == [1, 1, 1] and got == [new_id, new_id]:
            raise CheckFailed(f"{what}: expected {expected}, got {got}: after merging a pair, skip both of its ids "
                              "(the middle 1 cannot be used twice)")
        if got != expected and len(got) == len(expected) - 1 and got == expected[:-1]:
            raise CheckFailed(f"{what}: expected {expected}, got {got}: the last id is missing "
                              "(keep an unmerged final id)")
        _first_difference(got, expected, what)
    return "correct: occurrences merged left to right, without overlap"


@check("encode with a merge list")
def check_encode(encode):
    merges = bpe.train_bpe(_CORPUS, 40)
    texts = ["the cat sat on the mat.", "猫坐在垫子上。", "lowest newest", "", "x", "你好，世界！the rat",
             "unseen words: zebra 斑马"]
    for text in texts:
        what = f"encode({text!r}, merges)"
        got = _as_int_list(call_learner(encode, text, list(merges)), what)
        expected = bpe.encode(text, merges)
        if got != expected:
            raw = bpe.text_to_bytes(text)
            for start in (255, 257):
                shifted = raw
                for i, pair in enumerate(merges):
                    shifted = bpe.merge_pair(shifted, pair, start + i)
                if got == shifted:
                    raise CheckFailed(f"{what}: your new ids start at {start}; merge i creates id 256 + i "
                                      "(ids 0-255 are the bytes)")
            if got and max(got) >= 256 + len(merges):
                raise CheckFailed(f"{what}: id {max(got)} does not exist: merge i creates id 256 + i "
                                  f"(ids go up to {255 + len(merges)})")
            if got == raw and raw != expected:
                raise CheckFailed(f"{what}: you returned the raw bytes; apply the merges: expected {_short(expected)}")
            reverse = raw
            for i in reversed(range(len(merges))):
                reverse = bpe.merge_pair(reverse, merges[i], 256 + i)
            if got == reverse:
                raise CheckFailed(f"{what}: you applied the merges last-first; apply them in the order they were "
                                  "learnt (a later merge builds on earlier ones)")
            _first_difference(got, expected, what)
    return f"correct: the {len(merges)} merges applied in training order"


@check("streaming decode (stretch)")
def check_stream_decode(stream_decode):
    rng = random.Random(2)
    cases = [[b"\xe4\xb8", b"\xad\xe6", b"\x96\x87!"], [b"Hello", b" ", b"world"], [], [b"a\xe4"],
             [b"\xff", b"x"], ["你好".encode()[:1], "你好".encode()[1:4], "你好".encode()[4:]],
             [b"\xf0\x9f", b"\x98", b"\x80ok"]]
    alphabet = [b"A", "中".encode(), "😀".encode(), "é".encode(), b"\xff"]
    for _ in range(20):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 8)))
        cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randrange(0, 5))))
        cases.append([data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])])
    for pieces in cases:
        what = f"stream_decode({_short(pieces, 6)})"
        got = call_learner(stream_decode, list(pieces))
        if not isinstance(got, list) or not all(isinstance(s, str) for s in got):
            raise CheckFailed(f"{what}: expected a list of str, one per piece, got {type(got).__name__}")
        expected = bpe.stream_decode(pieces)
        naive = [p.decode("utf-8", errors="replace") for p in pieces]
        if got != expected and got == naive:
            raise CheckFailed(f"{what}: expected {expected}, got {got}: a character cut across pieces came out "
                              "as '\\ufffd'; hold back an unfinished character's bytes until the rest arrives")
        if len(got) != len(pieces):
            raise CheckFailed(f"{what}: expected one string per piece ({len(pieces)}), got {len(got)}")
        expect_equal(got, expected, what)
    return "correct: whole characters as soon as their last byte arrives, bad bytes as '\\ufffd'"


__all__ = ["check_utf8_bytes", "check_get_pair_counts", "check_merge_pair", "check_encode", "check_stream_decode"]

"""Lesson 01 checks: pass on the answers, 'not done yet' on the stubs, a readable message on wrong ones."""
from minimind_core.checks import lesson01 as checks
from check_helpers import stub, expect_pass as _passes, expect_fail as _fails


# ---- reference answers, written independently of the library ---------------------------------

def utf8_bytes(text):
    return list(text.encode("utf-8"))


def get_pair_counts(ids):
    counts = {}
    for a, b in zip(ids, ids[1:]):
        counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts


def merge_pair(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if tuple(ids[i:i + 2]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def encode(text, merges):
    ids = utf8_bytes(text)
    for i, pair in enumerate(merges):
        ids = merge_pair(ids, pair, 256 + i)
    return ids


def stream_decode(pieces):
    out, pending = [], b""
    for p in pieces:
        data = pending + p
        # the longest prefix that does not end inside a character
        cut = len(data)
        for back in range(1, min(4, len(data)) + 1):
            b = data[-back]
            if b & 0xC0 == 0x80:
                continue                  # a continuation byte: look further back
            need = 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4 if b >> 3 == 0b11110 else 1
            if need > back:
                cut = len(data) - back    # an unfinished character at the end
            break
        out.append(data[:cut].decode("utf-8", errors="replace"))
        pending = data[cut:]
    if pending:
        if out:
            out[-1] += pending.decode("utf-8", errors="replace")
        else:
            out.append(pending.decode("utf-8", errors="replace"))
    return out


def test_answers_pass():
    _passes(checks.check_utf8_bytes(utf8_bytes))
    _passes(checks.check_get_pair_counts(get_pair_counts))
    _passes(checks.check_merge_pair(merge_pair))
    _passes(checks.check_encode(encode))
    _passes(checks.check_stream_decode(stream_decode))


def test_stubs_are_not_done_yet():
    for fn in (checks.check_utf8_bytes, checks.check_get_pair_counts, checks.check_merge_pair,
               checks.check_encode, checks.check_stream_decode):
        r = fn(stub)
        assert not r.passed and r.message.startswith("not done yet"), str(r)
        assert str(r).startswith("⏳")


def test_utf8_wrong_answers():
    _fails(checks.check_utf8_bytes(lambda t: [ord(c) for c in t]), "code points", "[228, 184, 173]")
    _fails(checks.check_utf8_bytes(lambda t: t.encode("utf-8")), "list(...)")
    _fails(checks.check_utf8_bytes(lambda t: list(t.encode("utf-16-le"))), "first difference at position")


def test_pair_count_wrong_answers():
    def no_overlap(ids):
        counts, i = {}, 0
        while i + 1 < len(ids):
            counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
            i += 2 if ids[i] == ids[i + 1] else 1
        return counts

    _fails(checks.check_get_pair_counts(no_overlap), "overlapping pairs")

    def off_by_one(ids):
        return get_pair_counts(ids[:-1])      # forgets the last pair

    _fails(checks.check_get_pair_counts(off_by_one), "pair (1, 2) expected count 2, got 1")
    _fails(checks.check_get_pair_counts(lambda ids: list(zip(ids, ids[1:]))), "expected a dict")


def test_merge_pair_wrong_answers():
    def drops_last(ids, pair, new_id):
        out, i = [], 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == tuple(pair):
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    _fails(checks.check_merge_pair(drops_last), "the last id is missing")

    def overlapping(ids, pair, new_id):
        out = []
        for i in range(len(ids)):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
                out.append(new_id)
            elif not (i > 0 and (ids[i - 1], ids[i]) == tuple(pair)):
                out.append(ids[i])
        return out

    _fails(checks.check_merge_pair(overlapping), "skip both of its ids")

    def in_place(ids, pair, new_id):
        ids[:] = merge_pair(ids, pair, new_id)
        return ids

    _fails(checks.check_merge_pair(in_place), "changed its input list")


def test_encode_wrong_answers():
    _fails(checks.check_encode(lambda text, merges: utf8_bytes(text)), "raw bytes")

    def reversed_order(text, merges):
        ids = utf8_bytes(text)
        for i in reversed(range(len(merges))):
            ids = merge_pair(ids, merges[i], 256 + i)
        return ids

    _fails(checks.check_encode(reversed_order), "last-first")

    def off_by_one(text, merges):
        ids = utf8_bytes(text)
        for i, pair in enumerate(merges):
            ids = merge_pair(ids, pair, 257 + i)
        return ids

    _fails(checks.check_encode(off_by_one), "256 + i")


def test_stream_decode_wrong_answers():
    _fails(checks.check_stream_decode(lambda ps: [p.decode("utf-8", errors="replace") for p in ps]),
           "hold back", "'\\ufffd'")
    _fails(checks.check_stream_decode(lambda ps: [b"".join(ps).decode("utf-8", errors="replace")]),
           "one string per piece")

    def drops_tail(pieces):                   # forgets an unfinished character at the very end
        out = stream_decode(pieces)
        if pieces and pieces[-1].endswith(b"\xe4"):
            out[-1] = out[-1].rstrip("\ufffd")
        return out

    _fails(checks.check_stream_decode(drops_tail), "stream_decode([b'a\\xe4'])")

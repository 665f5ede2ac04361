import random

import pytest

from minimind_core import bpe

TEXT = ("the cat sat on the mat. the cat ate the rat. 猫坐在垫子上。猫吃了老鼠。猫很开心。 "
        "low lower lowest newer newest ") * 3


def test_text_to_bytes_is_utf8():
    assert bpe.text_to_bytes("a") == [97]
    assert bpe.text_to_bytes("中") == [0xE4, 0xB8, 0xAD]
    assert bpe.text_to_bytes("é😀") == [0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80]
    with pytest.raises(TypeError):
        bpe.text_to_bytes(b"abc")


def test_pair_counts_overlap_and_order():
    assert bpe.get_pair_counts([1, 1, 1]) == {(1, 1): 2}
    assert bpe.get_pair_counts([5]) == {}
    assert bpe.get_pair_counts([]) == {}
    counts = bpe.get_pair_counts([3, 4, 3, 4, 5])
    assert counts == {(3, 4): 2, (4, 3): 1, (4, 5): 1}
    assert list(counts) == [(3, 4), (4, 3), (4, 5)]   # order of first appearance


def test_merge_pair_left_to_right_without_overlap():
    assert bpe.merge_pair([1, 1, 1], (1, 1), 9) == [9, 1]
    assert bpe.merge_pair([1, 1, 1, 1], (1, 1), 9) == [9, 9]
    assert bpe.merge_pair([1, 2, 3, 1, 2], (1, 2), 7) == [7, 3, 7]
    assert bpe.merge_pair([1, 2], (2, 1), 7) == [1, 2]
    assert bpe.merge_pair([], (2, 1), 7) == []


def test_train_small_example():
    assert bpe.train_bpe("low lower lowest", 3) == [(108, 111), (256, 119), (32, 257)]
    steps = bpe.train_bpe_steps("low lower lowest", 3)
    assert [s.token for s in steps] == [b"lo", b"low", b" low"]
    assert [s.count for s in steps] == [3, 3, 2]
    assert [s.length for s in steps] == [13, 10, 8]
    assert [s.new_id for s in steps] == [256, 257, 258]


def test_train_stops_when_no_pair_repeats():
    assert bpe.train_bpe("abcdef", 10) == []
    assert bpe.train_bpe("abcdef", 2, min_count=1) == [(97, 98), (256, 99)]
    assert bpe.train_bpe("", 5) == []
    assert len(bpe.train_bpe("aaaa", 10)) == 1      # (a,a) twice -> [256, 256] -> (256,256) once
    with pytest.raises(ValueError, match="n_merges"):
        bpe.train_bpe("abc", -1)


def _encode_by_applying_every_merge(text, merges):
    ids = bpe.text_to_bytes(text)
    for i, pair in enumerate(merges):
        ids = bpe.merge_pair(ids, pair, 256 + i)
    return ids


def test_encode_equals_merges_applied_in_order_and_round_trips():
    merges = bpe.train_bpe(TEXT, 60)
    assert len(merges) == 60
    rng = random.Random(0)
    alphabet = list("the catsmlowr .") + list("猫坐在垫子上老鼠") + ["😀", "é", "\n"]
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        ids = bpe.encode(text, merges)
        assert ids == _encode_by_applying_every_merge(text, merges)
        assert bpe.decode(ids, merges) == text
    assert len(bpe.encode(TEXT, merges)) < len(TEXT.encode("utf-8")) / 2


def test_training_text_encodes_to_the_training_result():
    steps = bpe.train_bpe_steps(TEXT, 40)
    merges = [s.pair for s in steps]
    assert len(bpe.encode(TEXT, merges)) == steps[-1].length


def test_vocab_and_decode():
    merges = bpe.train_bpe("中文中文中文", 3)
    table = bpe.vocab(merges)
    assert len(table) == 256 + len(merges)
    assert merges == [(0xE4, 0xB8), (256, 0xAD), (257, 0xE6)]
    assert table[257] == "中".encode("utf-8")
    assert bpe.decode([257, 0xE6, 0x96, 0x87], merges) == "中文"
    assert bpe.decode([0xE4, 0xB8], []) == "\ufffd"       # half a character
    with pytest.raises(ValueError, match="position 1"):
        bpe.decode([65, 300], [])
    with pytest.raises(ValueError, match="merge 0"):
        bpe.encode("ab", [(97, 256)])


def test_stream_decode_holds_back_partial_characters():
    assert bpe.stream_decode([b"\xe4\xb8", b"\xad\xe6", b"\x96\x87!"]) == ["", "中", "文!"]
    assert bpe.stream_decode([]) == []
    assert bpe.stream_decode([b"a\xe4"]) == ["a\ufffd"]
    assert bpe.stream_decode([b"\xff", b"x"]) == ["\ufffd", "x"]
    rng = random.Random(1)
    for _ in range(300):
        data = bytes(rng.choice([0x41, 0xE4, 0xB8, 0xAD, 0xF0, 0x9F, 0x98, 0x80, 0xC3, 0xA9, 0xFF])
                     for _ in range(rng.randrange(0, 20)))
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randrange(0, 6))))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        out = bpe.stream_decode(pieces)
        assert len(out) == len(pieces)
        assert "".join(out) == data.decode("utf-8", errors="replace")

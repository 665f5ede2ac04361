"""Readable token labels: a byte-level token that holds part of a Chinese character still reads well."""
import pytest
import torch

from minimind_core.tokenizer import token_labels


@pytest.fixture(scope="module")
def tokenizer():
    from minimind_core.tokenizer import train_tokenizer

    texts = ["你好，世界！Hello world.\n今天天气很好。", "The quick brown fox 你好 jumps.", "世界很大，我想去看看。"] * 20
    return train_tokenizer(texts, 300)


def test_token_labels_readable_for_chinese(tokenizer):
    ids = tokenizer.encode("你好，世界！Hi there\n", add_special_tokens=False)
    labels = token_labels(tokenizer, [1] + ids + [2])
    assert labels[0] == "<|im_start|>" and labels[-1] == "<|im_end|>"
    assert len(labels) == len(ids) + 2
    assert not any("\ufffd" in lab for lab in labels)
    joined = "".join(lab.replace("…", "").lstrip("·") for lab in labels[1:-1])
    assert joined == "你好，世界！Hi␣there↵"
    # a character cut across tokens: written on the token of its first byte, the rest marked '·'
    rare = tokenizer.encode("北京", add_special_tokens=False)
    assert len(rare) > 2, "the test needs a character split into bytes"
    labels = token_labels(tokenizer, rare)
    assert labels[0].startswith("北") and labels[0].endswith("…") and labels[1].startswith("·")
    # an incomplete character at the end shows its bytes in hex
    cut = token_labels(tokenizer, rare[:1])
    assert cut[0].startswith("\\x"), cut


def test_token_labels_take_a_tensor_and_name_special_tokens(tokenizer):
    ids = tokenizer.encode("Hi\tthere", add_special_tokens=False)
    assert token_labels(tokenizer, torch.tensor(ids)) == token_labels(tokenizer, ids)
    assert "⇥" in "".join(token_labels(tokenizer, ids))
    assert token_labels(tokenizer, [0, 2]) == ["<|endoftext|>", "<|im_end|>"]
    assert token_labels(tokenizer, []) == []

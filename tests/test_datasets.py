"""Datasets of every stage: packed pretraining cache, padded pretraining, SFT loss mask, DPO."""
import json
import os
import pickle
import random

import numpy as np
import pytest
import torch

from minimind_core.chat import DEFAULT_SYSTEM, render_chat, render_with_spans
from minimind_core.datasets import (DPODataset, PackedDataset, PaddedPretrainDataset, SFTDataset,
                                    build_token_cache, cache_paths, collate_dpo, collate_pad,
                                    encode_conversation, encode_dpo_pair, encode_text)
from minimind_core.errors import DataError
from minimind_core.losses import IGNORE_INDEX
from minimind_core.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizer

EN = ("the cat sat on the mat and the dog ran to the park where children play every day "
      "learning a language model needs data and patience").split()
ZH = list("我们学习语言模型的训练方法今天天气很好小猫在草地上玩耍中国的首都是北京")


def sentence(rng, n=12):
    if rng.random() < 0.5:
        return " ".join(rng.choice(EN) for _ in range(n)).capitalize() + "."
    return "".join(rng.choice(ZH) for _ in range(n)) + "。"


@pytest.fixture(scope="session")
def tok(tmp_path_factory):
    rng = random.Random(0)
    texts = [sentence(rng, rng.randint(5, 20)) for _ in range(300)]
    texts += [render_chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])]
    return train_tokenizer(texts, 400, tmp_path_factory.mktemp("tok"))


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


@pytest.fixture
def pretrain_file(tmp_path):
    rng = random.Random(1)
    docs = [{"text": " ".join(sentence(rng) for _ in range(rng.randint(1, 4)))} for _ in range(120)]
    return write_jsonl(tmp_path / "pretrain.jsonl", docs), [d["text"] for d in docs]


def expected_stream(tok, texts):
    out = []
    for t in texts:
        out += [BOS_ID] + encode_text(tok, t) + [EOS_ID]
    return out


# ---------------------------------------------------------------------------------------------
# packed pretraining

def test_token_cache_holds_every_document_wrapped_in_bos_eos(tok, pretrain_file, tmp_path):
    path, texts = pretrain_file
    cache = build_token_cache(path, tok, cache_dir=tmp_path / "cache", num_workers=1, progress=False)
    assert cache.n_docs == len(texts) and cache.dtype == np.uint16
    assert cache.tokens.tolist() == expected_stream(tok, texts)
    meta = json.loads(cache.meta_path.read_text())
    assert meta["n_tokens"] == cache.n_tokens and meta["source_size"] == path.stat().st_size
    assert meta["bad_lines"] == 0 and meta["dtype"] == "uint16"
    # "<|im_start|>" + text + "<|im_end|>" tokenized as one string gives the same ids
    assert encode_text(tok, "<|im_start|>" + texts[0] + "<|im_end|>") == expected_stream(tok, texts[:1])


def test_token_cache_multiprocess_equals_single(tok, pretrain_file, tmp_path):
    path, texts = pretrain_file
    a = build_token_cache(path, tok, cache_dir=tmp_path / "a", num_workers=1, chunk_docs=16, progress=False)
    b = build_token_cache(path, tok, cache_dir=tmp_path / "b", num_workers=2, chunk_docs=16, progress=False)
    assert np.array_equal(np.asarray(a.tokens), np.asarray(b.tokens)) and a.n_docs == b.n_docs


def test_token_cache_reuse_and_rebuild(tok, pretrain_file, tmp_path, capsys):
    path, texts = pretrain_file
    cdir = tmp_path / "cache"
    first = build_token_cache(path, tok, cache_dir=cdir, num_workers=1, progress=False)
    stamp = os.stat(first.path).st_mtime_ns
    again = build_token_cache(path, tok, cache_dir=cdir, num_workers=1, progress=False)
    assert again.path == first.path and os.stat(again.path).st_mtime_ns == stamp  # reused
    # the source changes: rebuilt, and says so
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"text": "one more document"}) + "\n")
    capsys.readouterr()
    third = build_token_cache(path, tok, cache_dir=cdir, num_workers=1, progress=False)
    assert "rebuilding" in capsys.readouterr().err
    assert third.n_docs == len(texts) + 1
    assert third.tokens.tolist() == expected_stream(tok, texts + ["one more document"])
    # another tokenizer: a cache of its own
    other = train_tokenizer(texts, 300)
    assert cache_paths(path, other, cdir)[0] != third.path
    # no temporary files left behind
    assert sorted(p.name for p in cdir.iterdir()) == sorted([third.path.name, third.meta_path.name])


def test_token_cache_bad_line_raises_and_leaves_no_cache(tok, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": "good"}, "{broken", {"text": "also good"}])
    cdir = tmp_path / "cache"
    with pytest.raises(DataError, match=r"p\.jsonl:2: malformed JSON"):
        build_token_cache(path, tok, cache_dir=cdir, num_workers=1, progress=False)
    assert not cdir.exists() or list(cdir.iterdir()) == []
    cache = build_token_cache(path, tok, cache_dir=cdir, num_workers=1, on_error="skip", progress=False)
    assert cache.n_docs == 2 and cache.meta["bad_lines"] == 1
    assert cache.tokens.tolist() == expected_stream(tok, ["good", "also good"])
    # a cache that skipped lines is not reused silently when errors must raise
    with pytest.raises(DataError, match=":2:"):
        build_token_cache(path, tok, cache_dir=cdir, num_workers=1, progress=False)


def test_packed_blocks_and_tail_reproduce_the_stream(tok, pretrain_file, tmp_path):
    path, _ = pretrain_file
    cache = build_token_cache(path, tok, cache_dir=tmp_path / "c", num_workers=1, progress=False)
    ds = PackedDataset(cache, seq_len=64)
    assert len(ds) == cache.n_tokens // 64 and ds.dropped_tokens == cache.n_tokens % 64
    assert ds.dropped_tokens == len(ds.tail())
    blocks = [ds[i] for i in range(len(ds))]
    for b in blocks:
        assert b["input_ids"].dtype == torch.long and b["input_ids"].shape == (64,)
        assert b["labels"] is b["input_ids"]
    joined = torch.cat([b["input_ids"] for b in blocks]).tolist() + ds.tail().tolist()
    assert joined == cache.tokens.tolist()  # every token exactly once, in order
    assert torch.equal(ds[-1]["input_ids"], blocks[-1]["input_ids"])
    with pytest.raises(IndexError):
        ds[len(ds)]
    ds2 = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker receives
    assert torch.equal(ds2[3]["input_ids"], blocks[3]["input_ids"])
    short = PackedDataset(cache, cache.n_tokens + 1)
    assert len(short) == 0 and short.dropped_tokens == cache.n_tokens


# ---------------------------------------------------------------------------------------------
# padded pretraining

def test_padded_pretrain_items(tok, pretrain_file):
    path, texts = pretrain_file
    ds = PaddedPretrainDataset(path, tok, seq_len=48)
    assert len(ds) == len(texts)
    for i in range(len(ds)):
        item = ds[i]
        ids = [BOS_ID] + encode_text(tok, texts[i])[:46] + [EOS_ID]
        n = len(ids)
        assert item["input_ids"][:n].tolist() == ids
        assert (item["input_ids"][n:] == PAD_ID).all()
        assert item["labels"][:n].tolist() == ids and (item["labels"][n:] == IGNORE_INDEX).all()
    manual = sum(int((ds[i]["labels"] == IGNORE_INDEX).sum()) for i in range(len(ds))) / (len(ds) * 48)
    assert ds.padding_fraction(n=10_000) == pytest.approx(manual)
    assert 0 < manual < 1
    assert 0 <= ds.padding_fraction(n=10) <= 1


# ---------------------------------------------------------------------------------------------
# SFT loss mask, token by token

def segments(messages):
    """(text, trained?) pieces of the rendered chat, in order: headers untrained, bodies trained
    for assistant messages."""
    msgs = list(messages)
    if not msgs or msgs[0]["role"] != "system":
        msgs = [{"role": "system", "content": DEFAULT_SYSTEM}] + msgs
    out = []
    for m in msgs:
        out.append((f"<|im_start|>{m['role']}\n", False))
        out.append((f"{m['content']}<|im_end|>\n", m["role"] == "assistant"))
    return out


CONVERSATIONS = {
    "single_en": [{"role": "user", "content": "Where does the cat play?"},
                  {"role": "assistant", "content": "The cat plays in the park."}],
    "single_zh": [{"role": "user", "content": "中国的首都是哪里？"},
                  {"role": "assistant", "content": "中国的首都是北京。"}],
    "with_system": [{"role": "system", "content": "你是一个小助手"},
                    {"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": "你好！"}],
    "multi_turn": [{"role": "user", "content": "the dog ran"},
                   {"role": "assistant", "content": "to the park."},
                   {"role": "user", "content": "今天天气"},
                   {"role": "assistant", "content": "很好。"},
                   {"role": "user", "content": "and then?"},
                   {"role": "assistant", "content": "Children play every day."}],
}


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_sft_mask_token_by_token(tok, name):
    messages = CONVERSATIONS[name]
    ids, labels = encode_conversation(messages, tok)
    # tokenizing the whole text equals tokenizing it segment by segment
    seg_ids, seg_labels = [], []
    for text, trained in segments(messages):
        piece = encode_text(tok, text)
        seg_ids += piece
        seg_labels += piece if trained else [IGNORE_INDEX] * len(piece)
    assert ids == encode_text(tok, render_chat(messages))
    assert ids == seg_ids
    assert labels == seg_labels
    # what is trained decodes to exactly the assistant replies, each closed by <|im_end|>\n
    replies = "".join(m["content"] + "<|im_end|>\n" for m in messages if m["role"] == "assistant")
    assert tok.decode([t for t in labels if t != IGNORE_INDEX]) == replies
    # headers are never trained
    n_assistant = sum(m["role"] == "assistant" for m in messages)
    assert sum(1 for i, l in zip(ids, labels) if i == BOS_ID and l != IGNORE_INDEX) == 0
    assert sum(1 for i, l in zip(ids, labels) if i == EOS_ID and l != IGNORE_INDEX) == n_assistant


def test_default_system_inserted_only_when_missing(tok):
    text, _ = render_with_spans(CONVERSATIONS["single_en"])
    assert text.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n")
    text, _ = render_with_spans(CONVERSATIONS["with_system"])
    assert text.startswith("<|im_start|>system\n你是一个小助手<|im_end|>\n") and DEFAULT_SYSTEM not in text


def test_reply_starting_with_newlines_never_trains_the_header(tok):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\n\n the cat"}]
    ids, labels = encode_conversation(messages, tok)
    text, spans = render_with_spans(messages)
    trained = tok.decode([t for t in labels if t != IGNORE_INDEX])
    assert text[spans[0][0]:spans[0][1]].endswith(trained) and trained.endswith("the cat<|im_end|>\n")


def test_reasoning_content_is_rendered_and_trained(tok):
    messages = [{"role": "user", "content": "why?"},
                {"role": "assistant", "content": "Because.", "reasoning_content": "think it over"}]
    ids, labels = encode_conversation(messages, tok)
    assert tok.decode([t for t in labels if t != IGNORE_INDEX]) == (
        "<think>\nthink it over\n</think>\n\nBecause.<|im_end|>\n")


TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
TOOL_CONVERSATION = [
    {"role": "system", "content": "你是助手", "tools": json.dumps(TOOLS)},
    {"role": "user", "content": "Is it raining in the park?"},
    {"role": "assistant", "content": "", "reasoning_content": "ask the tool",
     "tool_calls": '[{"name": "weather", "arguments": {"city": "park"}}]'},
    {"role": "tool", "content": '{"sky": "rain"}'},
    {"role": "assistant", "content": "Yes, it rains."},
]


def test_tool_call_mask_token_by_token(tok):
    """Thinking, tool calls and replies are trained with their <|im_end|>\\n; the system prompt
    with its tools, the user turn, the tool result and every role header are not."""
    tool_json = json.dumps(TOOLS[0])
    untrained_system = ("<|im_start|>system\n你是助手\n\n# Tools\n\nYou may call one or more functions to "
                        "assist with the user query.\n\nYou are provided with function signatures within "
                        "<tools></tools> XML tags:\n<tools>\n" + tool_json + "\n</tools>\n\nFor each function "
                        "call, return a json object with function name and arguments within <tool_call></tool_call> "
                        "XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
                        "<args-json-object>}\n</tool_call><|im_end|>\n")
    pieces = [
        (untrained_system, False),
        ("<|im_start|>user\nIs it raining in the park?<|im_end|>\n", False),
        ("<|im_start|>assistant\n", False),
        ("<think>\nask the tool\n</think>\n\n<tool_call>\n{\"name\": \"weather\", \"arguments\": "
         "{\"city\": \"park\"}}\n</tool_call><|im_end|>\n", True),
        ("<|im_start|>user\n<tool_response>\n{\"sky\": \"rain\"}\n</tool_response><|im_end|>\n", False),
        ("<|im_start|>assistant\n", False),
        ("Yes, it rains.<|im_end|>\n", True),
    ]
    ids, labels = encode_conversation(TOOL_CONVERSATION, tok)
    want = [(t, trained) for text, trained in pieces for t in encode_text(tok, text)]
    assert [tok.convert_ids_to_tokens(i) for i in ids] == [tok.convert_ids_to_tokens(t) for t, _ in want]
    for pos, ((i, label), (t, trained)) in enumerate(zip(zip(ids, labels), want)):
        assert label == (t if trained else IGNORE_INDEX), (pos, tok.convert_ids_to_tokens(t), trained)
    # the tags are single tokens: the trained ones are the think and tool-call tags, the untrained
    # ones the tags the system prompt mentions and the tool response's
    tag = {tok.convert_tokens_to_ids(t): t for t in ("<think>", "</think>", "<tool_call>", "</tool_call>",
                                                      "<tool_response>", "</tool_response>")}
    assert [tag[i] for i, l in zip(ids, labels) if i in tag and l != IGNORE_INDEX] == [
        "<think>", "</think>", "<tool_call>", "</tool_call>"]
    assert [tag[i] for i, l in zip(ids, labels) if i in tag and l == IGNORE_INDEX] == [
        "<tool_call>", "</tool_call>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
    assert sum(1 for i, l in zip(ids, labels) if i == EOS_ID and l != IGNORE_INDEX) == 2


def test_truncation(tok):
    ids, labels = encode_conversation(CONVERSATIONS["multi_turn"], tok)
    ids8, labels8 = encode_conversation(CONVERSATIONS["multi_turn"], tok, max_len=8)
    assert ids8 == ids[:8] and labels8 == labels[:8]


def sft_records():
    rng = random.Random(2)
    recs = []
    for _ in range(30):
        msgs = []
        for _ in range(rng.randint(1, 3)):
            msgs += [{"role": "user", "content": sentence(rng, rng.randint(3, 10))},
                     {"role": "assistant", "content": sentence(rng, rng.randint(3, 10))}]
        recs.append({"conversations": msgs})
    return recs


def test_sft_dataset_items_and_collate(tok, tmp_path):
    recs = sft_records()
    path = write_jsonl(tmp_path / "sft.jsonl", recs[:10] + [""] + recs[10:])
    ds = SFTDataset(path, tok, seq_len=1024)
    assert len(ds) == 30 and ds.line_no(10) == 12
    for i in (0, 10, 29):
        ids, labels = encode_conversation(recs[i]["conversations"], tok)
        assert ds[i]["input_ids"].tolist() == ids and ds[i]["labels"].tolist() == labels
    batch = collate_pad([ds[0], ds[1], ds[2]])
    lens = [len(ds[i]["input_ids"]) for i in range(3)]
    T = max(lens)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (3, T)
    for r, n in enumerate(lens):
        assert batch["input_ids"][r, :n].tolist() == ds[r]["input_ids"].tolist()
        assert (batch["input_ids"][r, n:] == PAD_ID).all() and (batch["labels"][r, n:] == IGNORE_INDEX).all()
        assert batch["attention_mask"][r].tolist() == [1] * n + [0] * (T - n)
    fixed = collate_pad([ds[0], ds[1]], pad_to=T + 5)
    assert fixed["input_ids"].shape == (2, T + 5)
    with pytest.raises(ValueError, match="pad_to"):
        collate_pad([ds[0]], pad_to=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_pad)
    assert sum(b["input_ids"].shape[0] for b in loader) == 30
    ds2 = pickle.loads(pickle.dumps(ds))
    assert torch.equal(ds2[5]["labels"], ds[5]["labels"])


def test_sft_truncation_and_no_target(tok, tmp_path, capsys):
    long_prompt = " ".join(["the cat sat on the mat"] * 30)
    recs = sft_records()[:5]
    recs.insert(2, {"conversations": [{"role": "user", "content": long_prompt},
                                      {"role": "assistant", "content": "ok"}]})
    path = write_jsonl(tmp_path / "sft.jsonl", recs)
    seq_len = 80
    ds = SFTDataset(path, tok, seq_len=seq_len)
    assert ds.stats["no_target"] == 1 and len(ds) == 5
    assert "dropped 1 conversations with no assistant token within seq_len 80 (first: line 3)" in capsys.readouterr().err
    assert 3 not in [ds.line_no(i) for i in range(len(ds))]
    items = [ds[i] for i in range(len(ds))]
    assert all(len(x["input_ids"]) <= seq_len for x in items)
    n_long = sum(len(encode_conversation(r["conversations"], tok)[0]) > seq_len for r in recs if r is not recs[2])
    assert ds.stats["truncated"] == n_long > 0
    assert all((x["labels"][1:] != IGNORE_INDEX).any() for x in items)
    with pytest.raises(DataError, match=r"sft\.jsonl:3: no assistant token within the first 80 tokens"):
        SFTDataset(path, tok, seq_len=seq_len, no_target="raise")
    # without the scan the same line raises when it is read
    lazy = SFTDataset(path, tok, seq_len=seq_len, scan=False)
    assert len(lazy) == 6
    with pytest.raises(DataError, match=r":3: no assistant token"):
        lazy[2]


def test_sft_dataset_bad_lines(tok, tmp_path, capsys):
    recs = sft_records()[:4]
    path = write_jsonl(tmp_path / "sft.jsonl", recs[:2] + ['{"conversations": [{"role": "bot", "content": "x"}]}'] + recs[2:])
    with pytest.raises(DataError, match=r"sft\.jsonl:3: field \"conversations\"\[0\]\.role: unknown role 'bot'"):
        SFTDataset(path, tok, seq_len=256)
    ds = SFTDataset(path, tok, seq_len=256, on_error="skip")
    assert len(ds) == 4 and ds.bad_lines.count == 1
    assert "skipped 1 bad line (first:" in capsys.readouterr().err
    lazy = SFTDataset(path, tok, seq_len=256, scan=False)
    with pytest.raises(DataError, match=":3:"):
        lazy[2]
    with pytest.raises(ValueError, match="scan=True"):
        SFTDataset(path, tok, seq_len=256, on_error="skip", scan=False)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        SFTDataset(tmp_path / "missing.jsonl", tok, seq_len=256)


# ---------------------------------------------------------------------------------------------
# DPO

def test_dpo_pairs_and_collate(tok, tmp_path):
    recs = []
    for r in sft_records()[:6]:
        c = r["conversations"][:2]
        rej = [c[0], {"role": "assistant", "content": "不知道。"}]
        recs.append({"chosen": c, "rejected": rej})
    path = write_jsonl(tmp_path / "dpo.jsonl", recs)
    ds = DPODataset(path, tok, seq_len=512)
    assert len(ds) == 6
    for i in range(6):
        item = ds[i]
        enc = encode_dpo_pair(recs[i], tok, 512)
        for side in ("chosen", "rejected"):
            ids, labels = encode_conversation(recs[i][side], tok)
            assert item[f"{side}_input_ids"].tolist() == ids == enc[f"{side}_input_ids"]
            assert item[f"{side}_labels"].tolist() == labels == enc[f"{side}_labels"]
    batch = collate_dpo([ds[0], ds[1], ds[2]])
    T = max(max(len(ds[i]["chosen_input_ids"]), len(ds[i]["rejected_input_ids"])) for i in range(3))
    for side in ("chosen", "rejected"):
        for key in ("input_ids", "labels", "attention_mask"):
            assert batch[f"{side}_{key}"].shape == (3, T)
        for r in range(3):
            n = len(ds[r][f"{side}_input_ids"])
            assert batch[f"{side}_labels"][r, :n].tolist() == ds[r][f"{side}_labels"].tolist()
            assert (batch[f"{side}_labels"][r, n:] == IGNORE_INDEX).all()
            assert batch[f"{side}_attention_mask"][r].sum() == n
    both = torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]])
    assert both.shape == (6, T)
    trained = [t for t in ds[0]["rejected_labels"].tolist() if t != IGNORE_INDEX]
    assert tok.decode(trained) == "不知道。<|im_end|>\n"

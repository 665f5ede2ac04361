import json
import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from conftest import small_config
from minimind_core import MiniMindForCausalLM
from minimind_core.chat import prompt_ids
from minimind_core.datasets import encode_conversation
from minimind_core.errors import DataError, EvalError
from minimind_core.evaluate import (
    QARow,
    greedy_replies,
    greedy_token_ids,
    load_eval_items,
    perplexity,
    qa_accuracy,
    score_reply,
    summarise,
)
from minimind_core.tokenizer import EOS_ID, PAD_ID, train_tokenizer

TEXTS = [
    "Mira Redfield lives in Selstead. She works as a baker and likes plum cake.",
    "Selstead is in Veloria. The river Amber flows through Brookmere.",
    "Where does Tom Ashby live? He lives in Brookmere.",
    "米拉住在塞尔斯特德。她是一名面包师。",
    "塞尔斯特德在维洛里亚。布鲁克米尔有一条河。",
] * 20


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(TEXTS, vocab_size=320, out_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def rand_model():
    torch.manual_seed(1)  # a seed whose replies both end with <|im_end|> and run to the limit
    model = MiniMindForCausalLM(small_config(vocab_size=320)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)   # varied replies, not one repeated token
    return model


ITEMS = [
    ("Where does Mira Redfield live?", "Selstead", ["Selstead", "Brookmere", "Veloria"], "city", "en"),
    ("Where does Tom Ashby live?", "Brookmere", ["Selstead", "Brookmere", "Veloria"], "city", "en"),
    ("Which country is Selstead in?", "Veloria", ["Veloria", "Selstead"], "country", "en"),
    ("米拉住在哪里？", "塞尔斯特德", ["塞尔斯特德", "布鲁克米尔"], "city", "zh"),
    ("What does Mira like?", "plum cake", ["plum cake", "cake"], "food", "en"),
]


def write_eval(path, items=ITEMS):
    with open(path, "w", encoding="utf-8") as f:
        for q, exp, choices, kind, lang in items:
            f.write(json.dumps({"conversations": [{"role": "user", "content": q},
                                                  {"role": "assistant", "content": f"It is {exp}."}],
                                "expected": exp, "choices": choices, "kind": kind, "lang": lang},
                               ensure_ascii=False) + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# scoring


def test_score_reply_rules():
    ch = ["Selstead", "Brookmere", "Veloria"]
    assert score_reply("She lives in Selstead.", "Selstead", ch)
    assert score_reply("she lives in SELSTEAD", "Selstead", ch)               # case-insensitive
    assert not score_reply("She lives in Brookmere.", "Selstead", ch)
    assert not score_reply("Selstead or Brookmere.", "Selstead", ch)           # hedging is wrong
    assert not score_reply("", "Selstead", ch)
    assert score_reply("Selstead, Selstead!", "Selstead", ch)                 # repeats are fine
    assert score_reply("Selstead", "Selstead", [])                            # no choices given
    # choices that contain one another
    assert score_reply("She likes plum cake.", "plum cake", ["plum cake", "cake"])
    assert not score_reply("She likes cake.", "plum cake", ["plum cake", "cake"])
    assert score_reply("She likes cake.", "cake", ["plum cake", "cake"])
    assert not score_reply("She likes plum cake.", "cake", ["plum cake", "cake"])
    assert not score_reply("plum cake, or just cake", "plum cake", ["plum cake", "cake"])
    assert score_reply("米拉住在塞尔斯特德。", "塞尔斯特德", ["塞尔斯特德", "布鲁克米尔"])
    assert not score_reply("布鲁克米尔", "塞尔斯特德", ["塞尔斯特德", "布鲁克米尔"])


def test_summarise_arithmetic_and_breakdown():
    rows = [QARow("q1", "a", "a", True, True, "city", "en"),
            QARow("q2", "b", "x", False, True, "city", "zh"),
            QARow("q3", "c", "c", True, False, "food", "zh"),
            QARow("q4", "d", "y", False, False, "food", "en")]
    r = summarise(rows)
    assert (r.n_correct, r.n, r.accuracy, r.in_format) == (2, 4, 0.5, 0.5)
    assert r.by_lang == {"en": {"n": 2, "n_correct": 1, "accuracy": 0.5},
                         "zh": {"n": 2, "n_correct": 1, "accuracy": 0.5}}
    assert r.by_kind["city"] == {"n": 2, "n_correct": 1, "accuracy": 0.5}
    assert r.line() == "accuracy: 0.50 (2/4)"
    assert summarise(rows[:3]).line() == "accuracy: 0.67 (2/3)"
    with pytest.raises(ValueError):
        summarise([])


def test_load_eval_items_errors(tmp_path):
    good = write_eval(tmp_path / "ok.jsonl")
    items = load_eval_items(good)
    assert len(items) == 5 and items[3].lang == "zh" and items[0].reference == "It is Selstead."
    assert len(load_eval_items(good, limit=2)) == 2
    bad = tmp_path / "bad.jsonl"
    lines = good.read_text(encoding="utf-8").splitlines()
    obj = json.loads(lines[1])
    del obj["expected"]
    bad.write_text("\n".join([lines[0], json.dumps(obj)]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r'bad.jsonl:2: field "expected": missing'):
        load_eval_items(bad)
    bad.write_text(lines[0] + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: malformed JSON"):
        load_eval_items(bad)
    obj = json.loads(lines[0])
    obj["conversations"][0]["role"] = "assistant"
    bad.write_text(json.dumps(obj) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r'bad.jsonl:1: field "conversations"\[0\].role: expected the question'):
        load_eval_items(bad)
    bad.write_text("\n\n", encoding="utf-8")
    with pytest.raises(EvalError, match=r"bad.jsonl: no questions"):
        load_eval_items(bad)


# ----------------------------------------------------------------------------------------------
# accuracy end to end with a scripted model


class ScriptedLM(nn.Module):
    """Answers each known prompt with a fixed token sequence (greedy: a one-hot logit)."""

    def __init__(self, scripts: dict, vocab: int):
        super().__init__()
        self.scripts = {tuple(k): list(v) for k, v in scripts.items()}
        self.vocab = vocab
        self.config = SimpleNamespace(max_position_embeddings=512)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=False, **kw):
        seq = input_ids if past_key_values is None else torch.cat([past_key_values, input_ids], 1)
        logits = torch.zeros(seq.shape[0], seq.shape[1], self.vocab)
        for b, row in enumerate(seq.tolist()):
            while row and row[0] == PAD_ID:
                row = row[1:]
            for prompt, script in self.scripts.items():
                if tuple(row[:len(prompt)]) == prompt:
                    done = len(row) - len(prompt)
                    logits[b, -1, script[done] if done < len(script) else EOS_ID] = 10.0
                    break
            else:
                raise AssertionError("unknown prompt")
        return SimpleNamespace(logits=logits, past_key_values=seq if use_cache else None)


def test_qa_accuracy_counts_scripted_replies(tmp_path, tok):
    path = write_eval(tmp_path / "eval.jsonl")
    replies = {
        ITEMS[0][0]: ("She lives in Selstead.", True),       # correct
        ITEMS[1][0]: ("He lives in Selstead.", True),        # wrong city
        ITEMS[2][0]: ("Selstead is in Veloria.", True),      # names another choice: wrong
        ITEMS[3][0]: ("她住在塞尔斯特德。", False),           # correct, but never closes its reply
        ITEMS[4][0]: ("She likes plum cake.", True),         # correct (cake only inside plum cake)
    }
    scripts = {}
    for q, (text, closed) in replies.items():
        ids = tok.encode(text, add_special_tokens=False)
        scripts[tuple(prompt_ids(tok, q))] = ids + ([EOS_ID] if closed else ids * 10)
    model = ScriptedLM(scripts, len(tok))
    for bs in (1, 3):
        r = qa_accuracy(model, tok, path, max_new_tokens=24, batch_size=bs)
        assert (r.n_correct, r.n) == (3, 5)
        assert r.accuracy == pytest.approx(0.6)
        assert [row.correct for row in r.rows] == [True, False, False, True, True]
        assert [row.in_format for row in r.rows] == [True, True, True, False, True]
        assert r.in_format == pytest.approx(0.8)
        assert r.rows[0].reply == "She lives in Selstead."
        assert r.by_lang["zh"] == {"n": 1, "n_correct": 1, "accuracy": 1.0}
        assert r.by_kind["country"]["n_correct"] == 0
    r = qa_accuracy(model, tok, path, max_new_tokens=24, limit=2)
    assert r.line() == "accuracy: 0.50 (1/2)"


def test_batched_greedy_equals_unbatched(tok, rand_model):
    questions = [q for q, *_ in ITEMS] + ["Hi", "Tell me about Veloria and the river Amber, please."]
    one = greedy_token_ids(rand_model, tok, questions, max_new_tokens=12, batch_size=1)
    many = greedy_token_ids(rand_model, tok, questions, max_new_tokens=12, batch_size=4)
    assert many == one
    assert len({tuple(r) for r in one}) == len(questions)     # distinct replies: the order matters
    assert any(r[-1] == EOS_ID for r in one) and any(len(r) == 12 and EOS_ID not in r for r in one)
    # the text helper agrees with the token ids
    texts = greedy_replies(rand_model, tok, questions, max_new_tokens=12, batch_size=3)
    assert [fmt for _, fmt in texts] == [r[-1] == EOS_ID for r in one]


def test_a_reply_cut_inside_a_character_drops_the_unfinished_tail(tok, monkeypatch):
    import minimind_core.evaluate as ev

    word = tok.encode("北京", add_special_tokens=False)       # byte-level: a character spans several tokens
    assert tok.decode(word[:-1]).endswith("\ufffd")
    monkeypatch.setattr(ev, "greedy_token_ids", lambda *a, **k: [word[:-1], word + [EOS_ID]])
    (cut, cut_closed), (whole, closed) = greedy_replies(None, tok, ["q1", "q2"], max_new_tokens=len(word) - 1)
    assert not cut_closed and "\ufffd" not in cut and "北京".startswith(cut)
    assert closed and whole == "北京"


# ----------------------------------------------------------------------------------------------
# perplexity


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_perplexity_pretrain_matches_model_loss(tmp_path, tok, rand_model):
    docs = TEXTS[:4]
    path = write_jsonl(tmp_path / "pre.jsonl", [{"text": t} for t in docs])
    stream = []
    for t in docs:
        stream += [1] + tok.encode(t, add_special_tokens=False) + [2]
    ids = torch.tensor([stream])
    with torch.no_grad():
        loss = rand_model(ids, labels=ids).loss.item()
    ppl, nll, n = perplexity(rand_model, tok, path, seq_len=len(stream) + 10)
    assert n == len(stream) - 1
    assert nll == pytest.approx(loss, rel=1e-5)
    assert ppl == pytest.approx(math.exp(loss), rel=1e-5)
    # short windows: still every token after the first predicted exactly once
    ppl2, nll2, n2 = perplexity(rand_model, tok, path, seq_len=16, batch_size=3)
    assert n2 == len(stream) - 1
    total = 0.0
    for start in range(0, len(stream) - 1, 15):          # windows of 16 sharing one token
        w = torch.tensor([stream[start:start + 16]])
        with torch.no_grad():
            total += rand_model(w, labels=w).loss.item() * (w.shape[1] - 1)
    assert nll2 == pytest.approx(total / n2, rel=1e-5)
    assert ppl2 == pytest.approx(math.exp(nll2))
    _, _, n3 = perplexity(rand_model, tok, path, seq_len=16, max_tokens=20, batch_size=3)
    assert n3 == 20
    _, _, n4 = perplexity(rand_model, tok, path, seq_len=1000, limit=1)
    assert n4 == len(tok.encode(docs[0], add_special_tokens=False)) + 1


def test_perplexity_sft_scores_assistant_tokens_only(tmp_path, tok, rand_model):
    convs = [[{"role": "user", "content": "Where does Mira live?"},
              {"role": "assistant", "content": "She lives in Selstead."}],
             [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": "米拉住在哪里？"},
              {"role": "assistant", "content": "塞尔斯特德。"},
              {"role": "user", "content": "And Tom?"},
              {"role": "assistant", "content": "Brookmere."}]]
    path = write_jsonl(tmp_path / "sft.jsonl", [{"conversations": c} for c in convs])
    total_loss, total_n = 0.0, 0
    for c in convs:
        ids, labels = encode_conversation(c, tok)
        targets = [lab != -100 for lab in labels]
        picked = tok.decode([t for t, k in zip(ids, targets) if k])
        want = "".join(m["content"] + "<|im_end|>\n" for m in c if m["role"] == "assistant")
        assert picked == want
        labels = torch.tensor([[t if k else -100 for t, k in zip(ids, targets)]])
        with torch.no_grad():
            loss = rand_model(torch.tensor([ids]), labels=labels).loss.item()
        n = int((labels[0, 1:] != -100).sum())
        total_loss += loss * n
        total_n += n
    ppl, nll, n = perplexity(rand_model, tok, path, seq_len=200)
    assert n == total_n
    assert nll == pytest.approx(total_loss / total_n, rel=1e-5)


def test_perplexity_bad_file(tmp_path, tok, rand_model):
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "hi"}])
    with pytest.raises(DataError, match=r'x.jsonl:1: expected a "text" field'):
        perplexity(rand_model, tok, path)
    path = write_jsonl(tmp_path / "y.jsonl", [{"text": "hi there"}, {"text": 3}])
    with pytest.raises(DataError, match=r'y.jsonl:2: field "text": expected a string'):
        perplexity(rand_model, tok, path)
    path = write_jsonl(tmp_path / "z.jsonl", [{"chosen": [], "rejected": []}])
    with pytest.raises(EvalError, match=r"z.jsonl: perplexity needs pretrain"):
        perplexity(rand_model, tok, path)


# ----------------------------------------------------------------------------------------------
# command line


def test_cli_eval_qa_and_ppl(tmp_path, tok, rand_model, capsys):
    from minimind_core.cli import main

    model_dir = tmp_path / "model"
    rand_model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    eval_file = write_eval(tmp_path / "eval.jsonl")
    assert main(["eval", "qa", "--model", str(model_dir), "--data", str(eval_file), "--limit", "3",
                 "--show", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"accuracy: \d\.\d\d \(\d/3\)", out[-1])
    assert sum(line.startswith(("ok ", "-- ")) for line in out) == 2
    pre = write_jsonl(tmp_path / "pre.jsonl", [{"text": t} for t in TEXTS[:3]])
    assert main(["eval", "ppl", "--model", str(model_dir), "--data", str(pre), "--seq-len", "32"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"perplexity: \d+\.\d\d \(\d+ tokens\)", out[-1])
    assert main(["eval", "ppl", "--model", str(tmp_path / "nowhere"), "--data", str(pre)]) == 2

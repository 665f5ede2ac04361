"""The bundled sample corpus: deterministic, committed up to date, held-out split, valid schemas."""
import json
import re
from pathlib import Path

import pytest

from minimind_core import sample_corpus as sc
from minimind_core.evaluate import load_eval_items, score_reply
from minimind_core.jsonl import check_file
from minimind_core.profiles import SAMPLE_DIR

JSONL = sorted(sc.FILES.values()) + ["identity.jsonl"]


def _read(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """The corpus written afresh with the default seed (tokenizer included)."""
    out = tmp_path_factory.mktemp("sample")
    paths = sc.write_sample_corpus(out, sc.DEFAULT_SEED)
    return out, paths


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path, regenerated):
    first, _ = regenerated
    again = sc.write_sample_corpus(tmp_path / "again", sc.DEFAULT_SEED, tokenizer=False)
    for name in JSONL:
        key = "lora" if name == "lora.jsonl" else name.removesuffix(".jsonl")
        assert (first / name).read_bytes() == again[key].read_bytes(), name
    other = sc.write_sample_corpus(tmp_path / "other", sc.DEFAULT_SEED + 1, tokenizer=False)
    assert (first / "pretrain.jsonl").read_bytes() != other["pretrain"].read_bytes()


def test_tokenizer_training_is_deterministic(tmp_path, regenerated):
    from minimind_core.tokenizer import train_tokenizer

    first, _ = regenerated
    corpus = sc.generate(sc.DEFAULT_SEED)
    train_tokenizer(sc.tokenizer_texts(corpus["pretrain"], corpus["sft"]), sc.SAMPLE_VOCAB_SIZE, tmp_path / "tok")
    assert (tmp_path / "tok" / "tokenizer.json").read_bytes() == (first / "tokenizer" / "tokenizer.json").read_bytes()


def test_committed_sample_is_current(regenerated):
    """minimind_core/sample must be exactly what `python -m minimind_core data sample` writes."""
    fresh, _ = regenerated
    for name in JSONL:
        committed = SAMPLE_DIR / name
        assert committed.exists(), f"{committed} missing: run `python -m minimind_core data sample`"
        assert committed.read_bytes() == (fresh / name).read_bytes(), (
            f"{committed} is out of date: run `python -m minimind_core data sample` and commit the result")
    committed_vocab = json.loads((SAMPLE_DIR / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    fresh_vocab = json.loads((fresh / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    assert committed_vocab["model"]["vocab"] == fresh_vocab["model"]["vocab"]
    assert committed_vocab["model"]["merges"] == fresh_vocab["model"]["merges"]


def test_sample_tokenizer_specials_and_size():
    from minimind_core.tokenizer import load_tokenizer

    tok = load_tokenizer(SAMPLE_DIR / "tokenizer")
    assert len(tok) == sc.SAMPLE_VOCAB_SIZE
    text = "Mira lives in Selstead. 她住在青岚城。"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


@pytest.mark.parametrize("name,stage", [("pretrain.jsonl", "pretrain"), ("sft.jsonl", "sft"),
                                        ("lora.jsonl", "sft"), ("dpo.jsonl", "dpo"), ("identity.jsonl", "sft"),
                                        ("eval_qa.jsonl", "sft"), ("lora_eval.jsonl", "sft")])
def test_schemas(name, stage):
    path = SAMPLE_DIR / name
    n_good, errors = check_file(path, stage)
    assert errors == [] and n_good == len(_read(path)) > 0


def test_conversation_shapes():
    sft = _read(SAMPLE_DIR / "sft.jsonl")
    roles = [tuple(m["role"] for m in row["conversations"]) for row in sft]
    assert all(r[-1] == "assistant" for r in roles)
    assert sum(r[0] == "system" for r in roles) >= 10
    assert sum(r.count("user") >= 2 for r in roles) >= 10
    for row in _read(SAMPLE_DIR / "dpo.jsonl"):
        assert row["chosen"][:-1] == row["rejected"][:-1]       # same prompt
        assert row["chosen"][-1]["role"] == row["rejected"][-1]["role"] == "assistant"
        assert row["chosen"][-1]["content"] != row["rejected"][-1]["content"]
    # both languages everywhere
    for name in ("pretrain.jsonl", "sft.jsonl", "dpo.jsonl", "lora.jsonl"):
        text = (SAMPLE_DIR / name).read_text(encoding="utf-8")
        assert re.search(r"[\u4e00-\u9fff]", text) and re.search(r"[A-Za-z]{4}", text), name


def _items(name):
    rows = _read(SAMPLE_DIR / name)
    assert load_eval_items(SAMPLE_DIR / name)  # the evaluator accepts the file
    return rows


@pytest.mark.parametrize("name", ["eval_qa.jsonl", "lora_eval.jsonl"])
def test_eval_items_score_their_own_reference(name):
    for i, row in enumerate(_items(name), start=1):
        ref = row["conversations"][1]["content"]
        assert row["expected"] in row["choices"], f"{name}:{i}"
        assert row["lang"] in sc.LANGS
        assert row["expected"] in ref and score_reply(ref, row["expected"], row["choices"]), f"{name}:{i}: {ref}"
        others = [c for c in row["choices"] if c != row["expected"]]
        assert not any(c in ref for c in others), f"{name}:{i}: {ref} names another choice"
        # a wrong answer is scored wrong
        if others:
            assert not score_reply(ref.replace(row["expected"], others[0]), row["expected"], row["choices"])


def test_choices_are_unambiguous():
    for row in _read(SAMPLE_DIR / "eval_qa.jsonl"):
        ch = row["choices"]
        assert len(set(ch)) == len(ch)
        assert not any(a != b and a.casefold() in b.casefold() for a in ch for b in ch), ch


def test_eval_covers_kinds_and_languages():
    rows = _read(SAMPLE_DIR / "eval_qa.jsonl")
    assert 200 <= len(rows) <= 400
    assert {(r["kind"], r["lang"]) for r in rows} == {(k, l) for k in sc.KINDS for l in sc.LANGS}
    lora_rows = _read(SAMPLE_DIR / "lora_eval.jsonl")
    assert {r["expected"] for r in lora_rows} == {sc.LORA_NAME}
    assert all(r["choices"] == [sc.LORA_NAME, sc.IDENTITY_NAME] for r in lora_rows)


def _names(world, train):
    people = [p for p in world.people if p.train == train]
    cities = [c for c in world.cities if c.train == train]
    return {n for p in people for n in (p.en, p.zh)} | {n for c in cities for n in (c.en, c.zh)}


def test_eval_entities_are_disjoint_from_sft_question_entities():
    world = sc.build_world(__import__("random").Random(sc.DEFAULT_SEED))
    held_out, train = _names(world, False), _names(world, True)
    assert len(held_out) == len(train) == 120  # 50 people + 10 cities, two name forms each

    def mentioned(text, names):
        return {n for n in names if n in text}

    eval_text = " ".join(r["conversations"][0]["content"] for r in _read(SAMPLE_DIR / "eval_qa.jsonl"))
    assert mentioned(eval_text, held_out) == held_out
    assert not mentioned(eval_text, train)
    held_out_people = {n for p in world.people if not p.train for n in (p.en, p.zh)}
    for name in ("sft.jsonl", "dpo.jsonl", "lora.jsonl"):
        text = (SAMPLE_DIR / name).read_text(encoding="utf-8")
        assert not mentioned(text, held_out_people), f"{name} mentions held-out people"
        # held-out cities may be answers (where a train-half person lives), never the subject
        questions = " ".join(m["content"] for row in _read(SAMPLE_DIR / name)
                             for msgs in (row.get("conversations"), row.get("chosen")) if msgs
                             for m in msgs if m["role"] == "user")
        assert not mentioned(questions, held_out), f"{name} asks about held-out entities"
    # SFT asks about every train-half entity
    sft_text = (SAMPLE_DIR / "sft.jsonl").read_text(encoding="utf-8")
    assert mentioned(sft_text, train) == train
    # question-and-answer pages in the pretraining text are about the train half only
    pretrain = [r["text"] for r in _read(SAMPLE_DIR / "pretrain.jsonl")]
    qa_pages = [t for t in pretrain if t.startswith(("Q: ", "问："))]
    assert qa_pages and not mentioned(" ".join(qa_pages), held_out_people)
    qa_questions = " ".join(line for t in qa_pages for line in t.split("\n") if line.startswith(("Q: ", "问：")))
    assert not mentioned(qa_questions, held_out)
    # but pretraining states the held-out facts
    all_text = " ".join(pretrain)
    assert mentioned(all_text, held_out) == held_out


def test_world_facts_reach_pretraining_text():
    """Every held-out eval fact appears in a pretraining sentence next to its entity's name."""
    pretrain = [r["text"] for r in _read(SAMPLE_DIR / "pretrain.jsonl")]
    world = sc.build_world(__import__("random").Random(sc.DEFAULT_SEED))
    for p in world.people:
        for lang in sc.LANGS:
            name = p.en if lang == "en" else p.zh
            docs = [t for t in pretrain if name in t]
            assert len(docs) >= 8, (name, len(docs))
            for kind in ("city", "job", "food"):
                value = sc._fact_value(p, kind, lang)
                assert sum(value in t for t in docs) >= 8, (name, kind)


def test_identity_sets():
    sft = (SAMPLE_DIR / "sft.jsonl").read_text(encoding="utf-8")
    lora = _read(SAMPLE_DIR / "lora.jsonl")
    assert "你是谁？" in sft and "Who are you?" in sft and sc.IDENTITY_NAME in sft
    assert sc.LORA_NAME not in sft
    lora_answers = " ".join(r["conversations"][-1]["content"] for r in lora)
    assert sc.LORA_NAME in lora_answers and sc.IDENTITY_NAME not in lora_answers
    lora_questions = {r["conversations"][0]["content"] for r in lora}
    eval_questions = {r["conversations"][0]["content"] for r in _read(SAMPLE_DIR / "lora_eval.jsonl")}
    assert not lora_questions & eval_questions


def test_cli_writes_to_out(tmp_path, capsys):
    from minimind_core.cli import main

    assert main(["data", "sample", "--out", str(tmp_path), "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "pretrain.jsonl" in out and "tokens" in out
    for name in JSONL:
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "tokenizer" / "tokenizer.json").exists()


def test_tool_and_thinking_conversations_fit_the_small_profiles():
    """The SFT file holds tool calls (as JSON strings and as arrays), tool results and replies that
    think first; each fits the 256 positions of the smoke and tiny SFT stages, so both train them."""
    from minimind_core.datasets import encode_conversation
    from minimind_core.profiles import get_profile
    from minimind_core.tokenizer import load_tokenizer

    sft = _read(SAMPLE_DIR / "sft.jsonl")
    tools = [r["conversations"] for r in sft if r["conversations"][0].get("tools")]
    thinking = [r["conversations"] for r in sft if any(m.get("reasoning_content") for m in r["conversations"])]
    assert len(tools) == 32 and len(thinking) == 22
    assert {type(c[0]["tools"]) for c in tools} == {str, list}
    assert {type(c[2]["tool_calls"]) for c in tools} == {str, list}
    assert all([m["role"] for m in c] == ["system", "user", "assistant", "tool", "assistant"] for c in tools)
    names = {json.loads(c[2]["tool_calls"])[0]["name"] if isinstance(c[2]["tool_calls"], str)
             else c[2]["tool_calls"][0]["name"] for c in tools}
    assert names == {"lookup_person", "weather"}
    tok = load_tokenizer(SAMPLE_DIR / "tokenizer")
    longest = max(len(encode_conversation(c, tok)[0]) for c in tools + thinking)
    for profile in ("smoke", "tiny"):
        assert longest <= get_profile(profile).stage("sft").seq_len, (profile, longest)


def test_lookup_results_are_the_world_facts():
    world = sc.build_world(__import__("random").Random(sc.DEFAULT_SEED))
    by_name = {p.en: p for p in world.people} | {p.zh: p for p in world.people}
    for row in _read(SAMPLE_DIR / "sft.jsonl"):
        conv = row["conversations"]
        if not conv[0].get("tools") or "lookup_person" not in json.dumps(conv[0]["tools"]):
            continue
        call = conv[2]["tool_calls"]
        name = (json.loads(call) if isinstance(call, str) else call)[0]["arguments"]["name"]
        p, lang = by_name[name], "en" if name.isascii() else "zh"
        assert p.train
        assert json.loads(conv[3]["content"]) == {k: sc._fact_value(p, k, lang) for k in ("city", "job", "food")}
        assert conv[4]["content"] in {sc.answer(p, k, lang) for k in ("city", "job", "food")}


def test_identity_set_for_the_full_profile():
    from minimind_core.identity import identity_conversations
    from minimind_core.profiles import get_profile

    rows = _read(SAMPLE_DIR / "identity.jsonl")
    assert rows == identity_conversations() != identity_conversations(seed=1)
    assert 250 <= len(rows) <= 400
    replies = [m["content"] for r in rows for m in r["conversations"] if m["role"] == "assistant"]
    assert sum("MiniMind" in r for r in replies) > len(replies) / 2
    zh = sum(bool(re.search(r"[\u4e00-\u9fff]", r["conversations"][-1]["content"])) for r in rows)
    assert zh == len(rows) / 2
    assert len({r["conversations"][-2]["content"] for r in rows}) >= 70  # varied questions
    assert get_profile("full").stage("lora").data == SAMPLE_DIR / "identity.jsonl"

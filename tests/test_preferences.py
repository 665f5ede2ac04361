"""Preference pairs from a model's own replies, and DPO trained on them adding the style they prefer."""
import dataclasses
import json
import math

import pytest
import torch

from minimind_core import preferences as pf
from minimind_core.errors import DataError
from minimind_core.jsonl import validate_record
from minimind_core.paths import SAMPLE_DIR
from minimind_core.profiles import Profile, get_profile


def _assistant_texts(path):
    out = set()
    for line in open(path, encoding="utf-8"):
        for m in json.loads(line)["conversations"]:
            if m["role"] == "assistant":
                out.add(m["content"])
    return out


def test_training_questions_cover_the_sft_half_in_the_sft_wording():
    items = pf.fact_questions("train")
    # 50 people x 3 facts + 10 cities x 2 facts, 2 languages, 3 wordings each
    assert len(items) == (50 * 3 + 10 * 2) * 2 * 3
    sft_answers = _assistant_texts(SAMPLE_DIR / "sft.jsonl")
    for it in items:
        validate_record(it, "eval_qa")
        answer = it["conversations"][1]["content"]
        assert answer in sft_answers, answer          # the chosen side is worded as SFT words it
        assert it["expected"] in answer and it["expected"] in it["choices"]
    assert len({it["conversations"][0]["content"] for it in items}) == len(items)
    assert len({it["fact"] for it in items}) == len(items) // 3


def test_heldout_questions_are_the_eval_set_facts_and_disjoint_from_training():
    train = pf.fact_questions("train")
    held = pf.fact_questions("heldout")
    assert not {it["fact"] for it in train} & {it["fact"] for it in held}
    held_questions = {it["conversations"][0]["content"]: it["expected"] for it in held}
    for line in open(SAMPLE_DIR / "eval_qa.jsonl", encoding="utf-8"):
        rec = json.loads(line)
        assert held_questions[rec["conversations"][0]["content"]] == rec["expected"]
    with pytest.raises(ValueError, match="split must be"):
        pf.fact_questions("test")


def test_wrong_answers_swap_the_value_and_keep_the_article_right():
    item = next(it for it in pf.fact_questions("train") if it["kind"] == "job" and it["lang"] == "en")
    wrong = pf.wrong_answers(item)
    assert len(wrong) == len(item["choices"]) - 1
    assert all(item["expected"] not in w for w in wrong)
    for w in wrong:
        value = next(c for c in item["choices"] if c in w)
        assert (" an " + value in w) == (value[0] in "aeiou")


def _mistake(item, reply, greedy=True):
    return pf.Mistake(item, reply, True, greedy)


def test_split_by_fact_keeps_every_wording_of_a_fact_together():
    items = pf.fact_questions("train")[:120]
    mistakes = [_mistake(it, "I do not know.") for it in items]
    train, held = pf.split_by_fact(mistakes, heldout=0.25, seed=3)
    assert len(train) + len(held) == len(mistakes)
    facts_train = {m.item["fact"] for m in train}
    facts_held = {m.item["fact"] for m in held}
    assert not facts_train & facts_held
    assert len(facts_held) == round(0.25 * 40)
    again = pf.split_by_fact(mistakes, heldout=0.25, seed=3)
    assert [m.question for m in again[1]] == [m.question for m in held]
    with pytest.raises(ValueError, match="heldout"):
        pf.split_by_fact(mistakes, heldout=1.0)


def test_pairs_are_valid_dpo_records_and_round_trip(tmp_path):
    items = pf.fact_questions("train")[:3]
    pairs = pf.to_pairs([_mistake(items[0], "He lives in Nowhere."), _mistake(items[1], " \n"),
                         _mistake(items[2], "它在白石城。")])
    assert len(pairs) == 2                              # the blank reply makes no pair
    for p in pairs:
        validate_record(p, "dpo")
        assert p["chosen"][0] == p["rejected"][0]
    assert pairs[0]["chosen"][1]["content"] == items[0]["conversations"][1]["content"]
    assert pairs[0]["rejected"][1]["content"] == "He lives in Nowhere."
    path = pf.write_jsonl(tmp_path / "sub" / "pairs.jsonl", pairs)
    assert pf.read_pairs(path) == pairs
    assert "它在白石城" in path.read_text(encoding="utf-8")          # Chinese unescaped
    assert pf.questions_of(pairs, items) == [items[0], items[2]]
    with pytest.raises(ValueError, match="pair 0"):
        pf.questions_of(pairs, items[1:])
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no preference pairs"):
        pf.read_pairs(tmp_path / "empty.jsonl")


def test_find_mistakes_keeps_wrong_replies_and_replaces_blank_ones(tmp_path, monkeypatch):
    from minimind_core import evaluate
    from minimind_core.checkpoint import load_model_and_tokenizer
    from course_model import write_course_model

    model, tok = load_model_and_tokenizer(write_course_model(tmp_path / "m"), device="cpu")
    items = [it for it in pf.fact_questions("train") if it["lang"] == "en"][:3]
    replies = [(items[0]["conversations"][1]["content"], True), ("She lives in Nowhere and Selstead", False),
               ("", True)]
    monkeypatch.setattr(evaluate, "greedy_replies", lambda *a, **k: replies)
    mistakes, n_right = pf.find_mistakes(model, tok, items)
    assert n_right == 1 and [m.item for m in mistakes] == items[1:]
    assert mistakes[0].reply == "She lives in Nowhere and Selstead" and mistakes[0].greedy
    assert not mistakes[1].greedy and mistakes[1].reply in pf.wrong_answers(items[2])
    scores = pf.reply_scores(model, tok, [[{"role": "user", "content": items[2]["conversations"][0]["content"]},
                                           {"role": "assistant", "content": w}] for w in pf.wrong_answers(items[2])])
    assert mistakes[1].reply == pf.wrong_answers(items[2])[int(scores.argmax())]


def test_the_styled_answer_is_absent_from_the_sft_data_and_seen_by_the_rule():
    items = pf.fact_questions("train")
    sft_answers = _assistant_texts(SAMPLE_DIR / "sft.jsonl")
    assert not any(a.rstrip().endswith(tuple(pf.CLOSING.values())) for a in sft_answers)
    for it in items:
        styled = pf.styled_answer(it)
        assert styled.startswith(it["conversations"][1]["content"]) and pf.has_style(styled, it)
        assert not pf.has_style(it["conversations"][1]["content"], it)
    en = next(it for it in items if it["lang"] == "en")
    zh = next(it for it in items if it["lang"] == "zh")
    assert pf.styled_answer(en).endswith(". Everyone knows that.") and pf.styled_answer(zh).endswith("。大家都知道。")
    assert pf.has_style("He lives in Halden. Everyone knows that. \n", en)
    assert not pf.has_style("Everyone knows that. He lives in Halden.", en)
    assert not pf.has_style("He lives in Halden. Everyone knows that.", zh)     # the remark of the question's language


def test_style_pairs_reject_the_models_own_reply_and_prefer_the_styled_truth(tmp_path, monkeypatch):
    from minimind_core import evaluate
    from minimind_core.checkpoint import load_model_and_tokenizer
    from course_model import write_course_model

    model, tok = load_model_and_tokenizer(write_course_model(tmp_path / "m"), device="cpu")
    items = [it for it in pf.fact_questions("train") if it["lang"] == "en"][:4]
    right = [it["conversations"][1]["content"] for it in items]
    replies = [(right[0], True), ("She lives in Nowhere and Selstead", False), ("", True), (pf.styled_answer(items[3]), True)]
    monkeypatch.setattr(evaluate, "greedy_replies", lambda *a, **k: replies)
    pairs, counts = pf.style_pairs(model, tok, items)
    assert counts == {"style": 1, "fact": 2, "already": 1}
    assert [m.item for m in pairs] == items[:3]
    assert all(m.answer == pf.styled_answer(m.item) for m in pairs)
    assert pairs[0].reply == right[0] and pairs[0].greedy          # a style pair: right, but bare
    assert pairs[1].reply == "She lives in Nowhere and Selstead"    # a fact pair: its own mistake
    assert not pairs[2].greedy and pairs[2].reply in pf.wrong_answers(items[2])
    records = pf.to_pairs(pairs)
    assert records[0]["chosen"][1]["content"] == right[0] + " Everyone knows that."
    assert records[0]["rejected"][1]["content"] == right[0]


def test_style_measure_counts_the_style_and_the_facts_of_one_greedy_pass(tmp_path, monkeypatch):
    from minimind_core import evaluate
    from minimind_core.checkpoint import load_model_and_tokenizer
    from course_model import write_course_model

    model, tok = load_model_and_tokenizer(write_course_model(tmp_path / "m"), device="cpu")
    items = pf.heldout_questions(SAMPLE_DIR / "eval_qa.jsonl")[:4]
    replies = [(pf.styled_answer(items[0]), True), (items[1]["conversations"][1]["content"], True),
               (pf.wrong_answers(items[2])[0] + " Everyone knows that.", True), ("", False)]
    monkeypatch.setattr(evaluate, "greedy_replies", lambda *a, **k: replies)
    got = pf.style_measure(model, tok, items)
    assert (got.style_rate, got.accuracy, got.n) == (0.5, 0.5, 4)
    assert got.replies == [r for r, _ in replies] and "style 0.50, facts right 0.50" in got.line()
    with pytest.raises(ValueError, match="no questions"):
        pf.style_measure(model, tok, [])


def test_heldout_questions_are_the_eval_set_in_its_order(tmp_path):
    held = pf.heldout_questions(SAMPLE_DIR / "eval_qa.jsonl")
    lines = [json.loads(line) for line in open(SAMPLE_DIR / "eval_qa.jsonl", encoding="utf-8")]
    assert [it["conversations"][0]["content"] for it in held] == [r["conversations"][0]["content"] for r in lines]
    assert [it["expected"] for it in held] == [r["expected"] for r in lines]
    bad = tmp_path / "eval.jsonl"
    train_q = pf.fact_questions("train")[0]
    bad.write_text(json.dumps(lines[0]) + "\n" + json.dumps({**lines[0], "conversations": train_q["conversations"]}) + "\n",
                   encoding="utf-8")
    with pytest.raises(DataError, match=r"eval.jsonl:2: .*not about the held-out half"):
        pf.heldout_questions(bad)


def test_dpo_pairs_are_made_once_from_the_sft_models_own_replies(tmp_path, monkeypatch, capsys):
    from minimind_core import course, evaluate
    from minimind_core.checkpoint import load_model_and_tokenizer
    from course_model import write_course_model

    class HereProfile(Profile):  # the smoke profile with its run folders under tmp_path
        def run_dir(self, stage):
            return tmp_path / "runs" / self.name / stage

    smoke = get_profile("smoke")
    prof = HereProfile(**{f.name: getattr(smoke, f.name) for f in dataclasses.fields(smoke)})
    prof = dataclasses.replace(prof, stages={**smoke.stages, "dpo": dataclasses.replace(
        smoke.stages["dpo"], data=course.self_pairs_path(prof))})
    model, tok = load_model_and_tokenizer(write_course_model(tmp_path / "m"), device="cpu")
    monkeypatch.setattr(course, "load_stage", lambda *a, **k: (model, tok))
    by_q = {it["conversations"][0]["content"]: it for it in pf.fact_questions("train")}

    def replies(model, tok, questions, **kw):   # right and bare, except one wrong reply
        return [("I do not know the city of Nowhere.", True) if i == 0 else (by_q[q]["conversations"][1]["content"], True)
                for i, q in enumerate(questions)]

    monkeypatch.setattr(evaluate, "greedy_replies", replies)
    path = course.dpo_pairs(prof)
    assert path.parent == tmp_path / "runs" / "smoke"
    train = pf.read_pairs(path)
    held = pf.read_pairs(course.self_pairs_path(prof, heldout=True))
    items = pf.fact_questions("train")
    assert len(train) + len(held) == 48 and len(held) >= 10
    facts = lambda pairs: {it["fact"] for it in pf.questions_of(pairs, items)}
    assert not facts(train) & facts(held)
    for p in train + held:
        item = pf.questions_of([p], items)[0]
        assert p["chosen"][1]["content"] == pf.styled_answer(item)
    rejected = [p["rejected"][1]["content"] for p in train + held]
    assert rejected.count("I do not know the city of Nowhere.") == 1
    assert "47 right replies without the remark (style pairs), 1 wrong (fact pairs)" in capsys.readouterr().out
    monkeypatch.setattr(evaluate, "greedy_replies", None)      # made once: the files are reused
    assert course.dpo_pairs(prof) == path


def test_preference_stats_of_the_reference_itself(tmp_path):
    from minimind_core.checkpoint import load_model_and_tokenizer
    from course_model import write_course_model

    model, tok = load_model_and_tokenizer(write_course_model(tmp_path / "m"), device="cpu")
    items = pf.fact_questions("train")[:6]
    pairs = pf.to_pairs([_mistake(it, w) for it in items for w in pf.wrong_answers(it)[:1]])
    st = pf.preference_stats(model, model, tok, pairs, beta=0.1)
    assert st.n == 6 and st.accuracy == 0.0 and st.margin == pytest.approx(0.0, abs=1e-6)
    assert st.loss == pytest.approx(math.log(2), rel=1e-6)
    pc, pr = pf.sequence_scores(model, tok, pairs)
    assert st.prefers_chosen == pytest.approx(float((pc > pr).float().mean()))
    assert torch.all(pc < 0) and torch.all(pr < 0)


def test_dpo_on_its_own_replies_adds_the_style_on_questions_in_no_pair(tmp_path):
    """The lesson's pipeline on the smoke profile, end to end: SFT, its own replies, DPO.

    The smoke SFT model never ends a reply with the remark; after the smoke DPO recipe (DPO plus
    the SFT term on the chosen replies) most of its replies to held-out questions, about entities
    no pair mentions, end with it, and it scores the chosen reply above its own on the held-out
    pairs with a positive margin.
    """
    from minimind_core.checkpoint import load_model_and_tokenizer, load_model
    from minimind_core.train import train

    quiet = dict(progress=False, threads=1)
    pre = train("pretrain", "smoke", out=tmp_path / "pre", **quiet)
    sft = train("sft", "smoke", init=pre.run_dir, out=tmp_path / "sft", mix_pretrain=False, **quiet)
    ref, tok = load_model_and_tokenizer(sft.checkpoint, device="cpu")
    pairs, counts = pf.style_pairs(ref, tok, pf.fact_questions("train")[::20])
    assert counts["already"] == 0 and counts["style"] + counts["fact"] == len(pairs) == 51
    train_part, held_part = pf.split_by_fact(pairs, heldout=0.25)
    train_pairs, held_pairs = pf.to_pairs(train_part), pf.to_pairs(held_part)
    data = pf.write_jsonl(tmp_path / "pairs.jsonl", train_pairs)
    dpo = train("dpo", "smoke", init=sft.run_dir, data=data, out=tmp_path / "dpo", **quiet)
    policy = load_model(dpo.checkpoint).eval()
    held_questions = pf.heldout_questions(get_profile("smoke").eval_qa)[::4]
    before = pf.style_measure(ref, tok, held_questions)
    after = pf.style_measure(policy, tok, held_questions)
    assert before.style_rate == 0.0 and after.style_rate >= 0.5, (before.line(), after.line())
    beta = dpo.config.dpo.beta
    st_before = pf.preference_stats(ref, ref, tok, held_pairs, beta=beta)
    st_after = pf.preference_stats(policy, ref, tok, held_pairs, beta=beta)
    assert st_after.prefers_chosen >= st_before.prefers_chosen + 0.3, (st_before, st_after)
    assert st_after.margin > 0 and st_after.accuracy >= 0.6 and st_after.loss < math.log(2)

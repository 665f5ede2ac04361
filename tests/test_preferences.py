"""Preference pairs from a model's own mistakes, and DPO trained on them moving the model the right way."""
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


def test_near_misses_are_the_least_sure_facts_with_their_likeliest_wrong_answer(tmp_path):
    from minimind_core.checkpoint import load_model_and_tokenizer
    from course_model import write_course_model

    model, tok = load_model_and_tokenizer(write_course_model(tmp_path / "m"), device="cpu")
    items = [it for it in pf.fact_questions("train") if it["lang"] == "en"][:30]
    skip = {items[0]["fact"]}
    near = pf.near_misses(model, tok, items, 3, exclude_facts=skip, pool=2)
    assert len(near) == 3 and len({m.item["fact"] for m in near}) == 3
    assert all(not m.greedy and m.item["fact"] not in skip for m in near)
    margins = []
    for m in near:
        user = {"role": "user", "content": m.question}
        wrong = pf.wrong_answers(m.item)
        s = pf.reply_scores(model, tok, [[user, {"role": "assistant", "content": r}] for r in [m.answer, *wrong]])
        assert m.reply == wrong[int(s[1:].argmax())]
        margins.append(float(s[0] - s[1:].max()))
    assert margins == sorted(margins)
    assert pf.near_misses(model, tok, items, 0) == []


def test_dpo_pairs_complete_too_few_mistakes_with_near_misses(tmp_path, monkeypatch, capsys):
    """An SFT model that gets all but one question right still yields training and held-out pairs."""
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
    wrong_q = {}

    def replies(model, tok, questions, **kw):
        wrong_q.setdefault("q", questions[0])
        return [("I do not know the city of Nowhere.", True) if q == wrong_q["q"] else ("", True) for q in questions]

    monkeypatch.setattr(evaluate, "greedy_replies", replies)
    monkeypatch.setattr(evaluate, "score_reply", lambda reply, expected, choices: reply == "")
    path = course.dpo_pairs(prof)
    assert path.parent == tmp_path / "runs" / "smoke"
    train = pf.read_pairs(path)
    held = pf.read_pairs(course.self_pairs_path(prof, heldout=True))
    items = pf.fact_questions("train")
    facts = lambda pairs: {it["fact"] for it in pf.questions_of(pairs, items)}
    assert len(facts(train)) >= 10 and len(facts(held)) >= 10
    assert not facts(train) & facts(held)
    rejected = [p["rejected"][1]["content"] for p in train + held]
    assert rejected.count("I do not know the city of Nowhere.") == 1
    out = capsys.readouterr().out
    assert "1 pairs from its mistakes" in out and f"{len(train) + len(held) - 1} from the likeliest wrong answers" in out


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


def test_dpo_on_its_own_mistakes_moves_the_model_towards_the_truth(tmp_path):
    """The lesson's pipeline on the smoke profile, end to end: SFT, its mistakes, DPO.

    The smoke model is too small to answer right after 20 SFT steps, so the direction is read off
    its preferences: after DPO it scores the true answer above its own mistake far more often, on
    the training pairs and on pairs about facts it never trained on, and the held-out margin is
    positive.
    """
    from minimind_core.checkpoint import load_model_and_tokenizer, load_model
    from minimind_core.train import train

    quiet = dict(progress=False, threads=1)
    pre = train("pretrain", "smoke", out=tmp_path / "pre", **quiet)
    sft = train("sft", "smoke", init=pre.run_dir, out=tmp_path / "sft", mix_pretrain=False, **quiet)
    ref, tok = load_model_and_tokenizer(sft.checkpoint, device="cpu")
    items = pf.fact_questions("train")[::20]
    mistakes, _ = pf.find_mistakes(ref, tok, items)
    train_part, held_part = pf.split_by_fact(mistakes, heldout=0.25)
    train_pairs, held_pairs = pf.to_pairs(train_part), pf.to_pairs(held_part)
    assert len(train_pairs) >= 30 and len(held_pairs) >= 10
    data = pf.write_jsonl(tmp_path / "pairs.jsonl", train_pairs)
    dpo = train("dpo", "smoke", init=sft.run_dir, data=data, out=tmp_path / "dpo", **quiet)
    policy = load_model(dpo.checkpoint).eval()
    beta = dpo.config.dpo.beta
    for pairs in (train_pairs, held_pairs):
        before = pf.preference_stats(ref, ref, tok, pairs, beta=beta)
        after = pf.preference_stats(policy, ref, tok, pairs, beta=beta)
        assert after.prefers_chosen >= before.prefers_chosen + 0.3, (before, after)
        assert after.margin > 0 and after.accuracy >= 0.6 and after.loss < math.log(2)

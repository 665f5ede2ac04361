"""Two-hop questions, the teacher's traces, rejection sampling and the answer after </think>."""
import json

import pytest

from minimind_core import reasoning
from minimind_core import sample_corpus as sc
from minimind_core.chat import render_chat
from minimind_core.evaluate import load_eval_items
from minimind_core.paths import SAMPLE_DIR


def test_two_hop_questions_cover_one_half_in_every_wording():
    train, held = reasoning.two_hop_questions("train"), reasoning.two_hop_questions("heldout")
    assert len(train) == len(held) == 50 * 2 * 3
    assert not {q["person"] for q in train} & {q["person"] for q in held}
    world = sc.build_world(__import__("random").Random(sc.DEFAULT_SEED))
    by_name = {p.en: p for p in world.people}
    for q in train[:150]:                      # English: the answer is the home city's country
        p = by_name[q["person"]]
        assert p.train and q["city"] == sc.CITIES[p.city][0]
        assert q["expected"] == sc.COUNTRIES[world.cities[p.city].country][0]
    with pytest.raises(ValueError, match="split"):
        reasoning.two_hop_questions("test")


def test_reason_eval_file_asks_the_heldout_half_once_per_person_and_language():
    items = load_eval_items(SAMPLE_DIR / "reason_eval.jsonl")
    held = {(q["conversations"][0]["content"], q["expected"]) for q in reasoning.two_hop_questions("heldout")}
    assert len(items) == 100 and {(it.question, it.expected) for it in items} <= held
    assert {it.lang for it in items} == {"en", "zh"} and {it.kind for it in items} == {sc.HOME_COUNTRY}


def _scripted(monkeypatch, answer):
    """greedy_replies answered by `answer(question)` instead of a model."""
    import minimind_core.evaluate as ev

    monkeypatch.setattr(ev, "greedy_replies", lambda m, t, qs, *a, **k: [(answer(q), True) for q in qs])


def test_teacher_traces_follow_the_first_reply_and_keep_only_right_conclusions(monkeypatch):
    items = reasoning.two_hop_questions("train", langs=("en",))[::3][:6]   # six people
    cities = {it["person"]: it["city"] for it in items}
    countries = {it["city"]: it["expected"] for it in items}

    def answer(q):
        for person, city in cities.items():
            if person in q:   # right city for the first three people, a wrong one for the others
                return f"She lives in {city if list(cities).index(person) < 3 else 'Selstead'}."
        city = next(c for c in sc.choices("city", "en") if c in q)
        return f"It is in {countries.get(city, 'Atlantis')}."

    _scripted(monkeypatch, answer)
    traces = reasoning.teacher_traces(None, None, items)
    assert [len(t.hops) for t in traces] == [2] * 6
    first = traces[0]
    assert first.correct and first.city == items[0]["city"]
    assert first.hops[0] == (f"Which city does {items[0]['person']} live in?", f"She lives in {items[0]['city']}.")
    assert first.reasoning == f"She lives in {items[0]['city']}. {items[0]['city']} is in {items[0]['expected']}."
    assert first.answer == items[0]["conversations"][1]["content"]
    for t in traces[3:]:   # the second hop asked about the wrong city; right only by coincidence
        assert t.hops[1][0] == "Which country is Selstead in?"
        assert t.correct == (countries.get("Selstead", "Atlantis") == t.item["expected"])


def test_a_first_reply_without_one_city_ends_the_trace(monkeypatch):
    items = reasoning.two_hop_questions("train", langs=("zh",))[:2]
    _scripted(monkeypatch, lambda q: "她住在青岚城或者白石城。")
    traces = reasoning.teacher_traces(None, None, items)
    assert all(len(t.hops) == 1 and t.city is None and not t.correct for t in traces)


def test_reference_trace_and_conversations_render_the_thinking_first():
    item = reasoning.two_hop_questions("heldout", langs=("zh",))[0]
    trace = reasoning.reference_trace(item)
    assert trace.correct and trace.hops[0][0] == f"{item['person']}住在哪座城市？"
    assert trace.reasoning == f"{trace.answer.replace(item['expected'], item['city'])}{item['city']}在{item['expected']}。"
    think, plain = reasoning.to_conversations([trace], think=True)[0], reasoning.to_conversations([trace], think=False)[0]
    text = render_chat(think["conversations"])
    assert f"<|im_start|>assistant\n<think>\n{trace.reasoning}\n</think>\n\n{trace.answer}<|im_end|>" in text
    assert "<think>" not in render_chat(plain["conversations"])
    assert json.loads(json.dumps(think))["conversations"][1]["reasoning_content"] == trace.reasoning


@pytest.mark.parametrize("reply,expected", [
    ("<think>\nShe lives in Eskby.\n</think>\n\nShe lives in Norvik.", ("She lives in Eskby.", "She lives in Norvik.")),
    ("She lives in Norvik.", (None, "She lives in Norvik.")),
    ("<think>\nShe lives in Eskby. Which country", ("She lives in Eskby. Which country", "")),
])
def test_split_reply(reply, expected):
    assert reasoning.split_reply(reply) == expected


def test_reasoning_accuracy_scores_only_the_answer(monkeypatch, tmp_path):
    items = [it for it in reasoning.two_hop_questions("heldout", langs=("en",))[:2]]
    path = tmp_path / "two_hop.jsonl"
    path.write_text("".join(json.dumps({k: it[k] for k in ("conversations", "expected", "choices", "kind", "lang")}) + "\n"
                            for it in items), encoding="utf-8")
    wrong = next(c for c in items[1]["choices"] if c != items[1]["expected"])
    replies = {items[0]["conversations"][0]["content"]: f"<think>\nMaybe {wrong}.\n</think>\n\nShe lives in {items[0]['expected']}.",
               items[1]["conversations"][0]["content"]: f"<think>\nIt is in {items[1]['expected']}.\n</think>\n\nIn {wrong}."}
    _scripted(monkeypatch, replies.__getitem__)
    r = reasoning.reasoning_accuracy(None, None, path)
    assert [row.correct for row in r.rows] == [True, False] and r.thinks == 1.0

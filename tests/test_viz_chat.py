"""The chat box: `respond` streams what `generate.chat` returns; the widget drives it from its button."""
import html

import pytest
import torch

from conftest import small_config
from minimind_core import MiniMindForCausalLM
from minimind_core.generate import chat
from minimind_core.profiles import SAMPLE_DIR
from minimind_core.tokenizer import load_tokenizer
from minimind_core.viz import chat as viz


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(SAMPLE_DIR / "tokenizer")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)  # a seed whose greedy replies are visible text (not only reserved tags)
    m = MiniMindForCausalLM(small_config(vocab_size=2048, max_position_embeddings=128)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def test_sampling_kwargs_maps_the_sliders():
    kw = viz.sampling_kwargs(temperature=0, top_k=0, top_p=1.0, repetition_penalty=1.2, max_new_tokens=5)
    assert kw == dict(do_sample=False, temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.2,
                      max_new_tokens=5)
    kw = viz.sampling_kwargs(temperature=0.7, top_k=40, top_p=0.9, seed=3)
    assert kw["do_sample"] and kw["top_k"] == 40 and kw["top_p"] == 0.9 and isinstance(kw["generator"], torch.Generator)
    for bad, msg in [(dict(temperature=-1), "temperature"), (dict(top_p=0), "top_p"), (dict(top_k=-2), "top_k"),
                     (dict(repetition_penalty=0), "repetition_penalty"), (dict(max_new_tokens=0), "max_new_tokens")]:
        with pytest.raises(ValueError, match=msg):
            viz.sampling_kwargs(**bad)


def test_respond_streams_the_same_reply_as_chat(model, tokenizer):
    history = [{"role": "user", "content": "Where does Emil Yardley live?"},
               {"role": "assistant", "content": "He lives in Millbrook."}]
    before = [dict(m) for m in history]
    pieces = list(viz.respond(model, tokenizer, history, "And what does he do?", temperature=0, max_new_tokens=12))
    assert history == before                                     # not changed
    assert pieces and all(b.startswith(a) for a, b in zip(pieces, pieces[1:]))   # a growing string
    expected = chat(model, tokenizer, history + [{"role": "user", "content": "And what does he do?"}],
                    max_new_tokens=12, do_sample=False)
    assert pieces[-1] == expected
    # the history matters: without it the prompt differs
    alone = list(viz.respond(model, tokenizer, [], "And what does he do?", temperature=0, max_new_tokens=12))[-1]
    assert alone == chat(model, tokenizer, "And what does he do?", max_new_tokens=12, do_sample=False)


def test_seeded_sampling_repeats(model, tokenizer):
    a = list(viz.respond(model, tokenizer, [], "hello", temperature=1.5, top_p=1.0, seed=7, max_new_tokens=10))[-1]
    b = list(viz.respond(model, tokenizer, [], "hello", temperature=1.5, top_p=1.0, seed=7, max_new_tokens=10))[-1]
    c = list(viz.respond(model, tokenizer, [], "hello", temperature=1.5, top_p=1.0, seed=8, max_new_tokens=10))[-1]
    assert a == b and a != c


def test_respond_rejects_bad_input(model, tokenizer):
    with pytest.raises(ValueError, match="empty"):
        next(viz.respond(model, tokenizer, [], "   "))
    with pytest.raises(ValueError, match=r"history\[0\]"):
        next(viz.respond(model, tokenizer, [{"role": "bot", "content": "x"}], "hi"))
    with pytest.raises(ValueError, match="no room"):
        next(viz.respond(model, tokenizer, [], "hi", max_new_tokens=125))
    with pytest.raises(ValueError, match="at most"):
        next(viz.respond(model, tokenizer, [], "word " * 200, max_new_tokens=8))


def test_fit_history_drops_the_oldest_turns(tokenizer):
    turns = []
    for i in range(6):
        turns += [{"role": "user", "content": f"question number {i} " * 3},
                  {"role": "assistant", "content": f"answer number {i} " * 3}]
    msgs = [{"role": "system", "content": "Be brief."}] + turns + [{"role": "user", "content": "last"}]
    from minimind_core.generate import chat_prompt_ids

    full = chat_prompt_ids(tokenizer, msgs).shape[1]
    fitted = viz.fit_history(tokenizer, msgs, full // 2)
    assert fitted[0]["role"] == "system" and fitted[-1]["content"] == "last"
    assert fitted[1]["role"] == "user" and len(fitted) < len(msgs)
    assert chat_prompt_ids(tokenizer, fitted).shape[1] <= full // 2
    assert fitted[1:] == msgs[len(msgs) - len(fitted) + 1:]        # the newest turns, in order
    assert viz.fit_history(tokenizer, msgs, full) == msgs


def test_chat_box_button_streams_into_the_transcript(model, tokenizer):
    box = viz.chat_box(model, tokenizer, temperature=0, max_new_tokens=8)
    assert box.temperature.value == 0 and box.max_new_tokens.value == 8
    assert "no messages yet" in box.transcript.value
    seen = []
    box.transcript.observe(lambda ch: seen.append(ch["new"]), names="value")
    box.message.value = "What is your name?"
    box.send.click()
    expected = chat(model, tokenizer, "What is your name?", max_new_tokens=8, do_sample=False)
    assert box.message.value == ""                              # the box empties after Send
    assert box.history == [{"role": "user", "content": "What is your name?"},
                           {"role": "assistant", "content": expected}]
    assert html.escape("What is your name?") in box.transcript.value
    assert html.escape(expected).replace("\n", "<br>") in box.transcript.value
    assert any("▌" in v for v in seen)                          # streamed: partial replies were shown
    assert "greedy" in box.status.value and not box.send.disabled
    # a second turn sees the first
    box.max_new_tokens.value = 3
    reply = box.submit("And then?")
    assert len(box.history) == 4 and box.history[-1]["content"] == reply
    assert len(tokenizer.encode(reply, add_special_tokens=False)) <= 3 + 1
    box.clear.click()
    assert box.history == [] and "no messages yet" in box.transcript.value


def test_chat_box_keeps_the_system_message_and_reports_errors(model, tokenizer):
    box = viz.chat_box(model, tokenizer, system="You are Nova.", temperature=0, max_new_tokens=4)
    box.send.click()                                             # empty text box
    assert "type a message first" in box.status.value and box.history[0]["content"] == "You are Nova."
    box.submit("hi")
    assert [m["role"] for m in box.history] == ["system", "user", "assistant"]
    box.max_new_tokens.value = 125                               # leaves no room in a 128-token context
    assert box.submit("hi again") is None and "no room" in box.status.value
    assert len(box.history) == 3 and not box.send.disabled
    box.reset()
    assert box.history == [{"role": "system", "content": "You are Nova."}]


def test_chat_box_answers_on_enter(model, tokenizer):
    box = viz.chat_box(model, tokenizer, temperature=0, max_new_tokens=4)
    box.message.value = "Hello"
    box.message._submission_callbacks(box.message)   # what the front end sends when Enter is pressed
    assert [m["role"] for m in box.history] == ["user", "assistant"] and box.history[0]["content"] == "Hello"
    assert box.message.value == ""

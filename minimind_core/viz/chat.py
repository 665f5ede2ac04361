"""A small chat box for lesson 07: type a message, watch the model's answer arrive token by token.

    respond(model, tokenizer, history, message, **sampling)   generator: the reply so far, piece by piece
    fit_history(tokenizer, history, max_tokens)               drop the oldest turns that do not fit
    chat_box(model, tokenizer, **sampling)                    the widget (text box, Send, Clear, sliders)

`respond` is the whole logic and needs no browser: it renders the conversation with the chat
template and the generation prompt, streams the reply with `generate.stream_text`, and yields
the text so far after every new piece. The widget's Send button calls it and redraws the
transcript after every piece, so the answer streams into the page.

Sampling settings (the sliders): temperature (0 means greedy: always the most likely token),
top_k (0 = off), top_p (1 = off), repetition_penalty (1 = off), max_new_tokens, and an optional
seed for repeatable samples.
"""
from __future__ import annotations

import html
import warnings
from typing import Iterator, Sequence

import torch

from ..generate import chat_prompt_ids, stream_text
from .common import keep_initial_state, load_widgets

DEFAULT_SAMPLING = dict(temperature=0.85, top_k=0, top_p=0.85, repetition_penalty=1.0, max_new_tokens=128)


def sampling_kwargs(temperature: float = 0.85, top_k: int | None = 0, top_p: float | None = 0.85,
                    repetition_penalty: float = 1.0, max_new_tokens: int = 128,
                    seed: int | None = None) -> dict:
    """The slider values as keyword arguments of `generate.stream_generate`.

    temperature 0 -> greedy (do_sample=False); top_k 0 and top_p 1 switch those filters off."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p}")
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0 (1 = off), got {repetition_penalty}")
    if int(max_new_tokens) < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    kw = dict(do_sample=temperature > 0, temperature=temperature if temperature > 0 else 1.0,
              top_k=int(top_k) if top_k else None, top_p=top_p if top_p is not None and top_p < 1 else None,
              repetition_penalty=float(repetition_penalty), max_new_tokens=int(max_new_tokens))
    if seed is not None:
        kw["generator"] = torch.Generator().manual_seed(int(seed))
    return kw


def _check_history(history: Sequence[dict]) -> list[dict]:
    out = []
    for i, m in enumerate(history):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise ValueError(f"history[{i}] must be {{'role': 'system'|'user'|'assistant', 'content': str}}, "
                             f"got {m!r}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def fit_history(tokenizer, messages: Sequence[dict], max_tokens: int) -> list[dict]:
    """`messages` without the oldest user/assistant turns, until the prompt has at most `max_tokens`
    tokens. A system message stays; the last message (the new question) always stays."""
    messages = list(messages)
    system = [m for m in messages[:1] if m["role"] == "system"]
    rest = messages[len(system):]
    while len(rest) > 1 and chat_prompt_ids(tokenizer, system + rest).shape[1] > max_tokens:
        rest = rest[1:]
        while len(rest) > 1 and rest[0]["role"] != "user":   # start at a user turn
            rest = rest[1:]
    return system + rest


def respond(model, tokenizer, history: Sequence[dict], message: str, **sampling) -> Iterator[str]:
    """Stream the model's reply to `message` after the conversation `history`.

    Yields the reply so far (a growing string) after every decoded piece. `history` is a list of
    {"role", "content"} messages and is not changed; append the message and the final reply to
    it yourself to continue the conversation. `sampling`: see `sampling_kwargs`. Old turns that do
    not fit the model's context (with room for max_new_tokens) are left out of the prompt."""
    if not isinstance(message, str) or not message.strip():
        raise ValueError("the message is empty: type something")
    kw = sampling_kwargs(**sampling)
    messages = _check_history(history) + [{"role": "user", "content": message}]
    room = model.config.max_position_embeddings - kw["max_new_tokens"]
    if room < 8:
        raise ValueError(f"max_new_tokens={kw['max_new_tokens']} leaves no room for a prompt in the model's "
                         f"context of {model.config.max_position_embeddings} tokens")
    messages = fit_history(tokenizer, messages, room)
    ids = chat_prompt_ids(tokenizer, messages)
    if ids.shape[1] > room:
        raise ValueError(f"the message is {ids.shape[1]} tokens long with the template; at most {room} fit "
                         f"with max_new_tokens={kw['max_new_tokens']}")
    reply = ""
    for piece in stream_text(model, tokenizer, ids, **kw):
        reply += piece
        yield reply


def transcript_html(history: Sequence[dict], pending: str | None = None) -> str:
    """The conversation as HTML: one block per message, the reply being written (if any) last."""
    rows = []
    colors = {"user": "#e8f0fb", "assistant": "#f3f3f3", "system": "#fff7e0"}
    for m in list(history) + ([{"role": "assistant", "content": pending + " ▌"}] if pending is not None else []):
        text = html.escape(m["content"]).replace("\n", "<br>")
        rows.append(f'<div style="background:{colors.get(m["role"], "#fff")};padding:4px 8px;margin:3px 0;'
                    f'border-radius:6px"><b>{html.escape(m["role"])}</b>: {text}</div>')
    return "".join(rows) or "<i>no messages yet</i>"


def chat_box(model, tokenizer, system: str | None = None, **sampling):
    """A chat widget: a text box, Send and Clear buttons, and sliders for temperature (0 = greedy),
    top-k (0 = off), top-p (1 = off), repetition penalty and max new tokens.

    Returns a VBox with `.message` (the text box), `.send` and `.clear` (buttons), `.temperature`,
    `.top_k`, `.top_p`, `.repetition_penalty`, `.max_new_tokens` (sliders), `.transcript` (HTML),
    `.status` (HTML), `.history` (the list of messages so far) and `.submit(text=None)`, the Send
    handler: it answers `text` (default: the text box's value), streaming into the transcript,
    appends both messages to `.history` and returns the reply."""
    widgets = load_widgets()
    s = {**DEFAULT_SAMPLING, **sampling}
    wide = widgets.Layout(width="340px")
    label = {"description_width": "90px"}   # "temperature", "rep. penalty" in full
    message = widgets.Text(value="", placeholder="type a message, then Enter or Send",
                           layout=widgets.Layout(width="70%"))
    send = widgets.Button(description="Send", button_style="primary")
    clear = widgets.Button(description="Clear")
    temperature = widgets.FloatSlider(value=s["temperature"], min=0.0, max=2.0, step=0.05,
                                      description="temperature", layout=wide, style=label)
    top_k = widgets.IntSlider(value=s["top_k"] or 0, min=0, max=200, description="top-k", layout=wide, style=label)
    top_p = widgets.FloatSlider(value=s["top_p"] if s["top_p"] is not None else 1.0, min=0.05, max=1.0,
                                step=0.05, description="top-p", layout=wide, style=label)
    penalty = widgets.FloatSlider(value=s["repetition_penalty"], min=1.0, max=2.0, step=0.05,
                                  description="rep. penalty", layout=wide, style=label)
    max_new = widgets.IntSlider(value=s["max_new_tokens"], min=1, max=512, description="max tokens",
                                layout=wide, style=label)
    transcript = widgets.HTML(value=transcript_html([]))
    status = widgets.HTML()
    box = widgets.VBox([transcript, widgets.HBox([message, send, clear]), status,
                        widgets.HBox([temperature, top_k]), widgets.HBox([top_p, penalty]), max_new])
    box.message, box.send, box.clear, box.transcript, box.status = message, send, clear, transcript, status
    box.temperature, box.top_k, box.top_p, box.repetition_penalty, box.max_new_tokens = \
        temperature, top_k, top_p, penalty, max_new
    box.history = [{"role": "system", "content": system}] if system else []

    def submit(text: str | None = None) -> str | None:
        text = message.value if text is None else text
        if not text.strip():
            status.value = "<i>type a message first</i>"
            return None
        message.value = ""
        send.disabled = True
        status.value = "<i>writing ...</i>"
        reply = ""
        try:
            for reply in respond(model, tokenizer, box.history, text, temperature=temperature.value,
                                 top_k=top_k.value, top_p=top_p.value, repetition_penalty=penalty.value,
                                 max_new_tokens=max_new.value):
                transcript.value = transcript_html(box.history + [{"role": "user", "content": text}], reply)
        except ValueError as e:
            status.value = f"<b>{html.escape(str(e))}</b>"
            transcript.value = transcript_html(box.history)
            return None
        finally:
            send.disabled = False
        box.history += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]
        transcript.value = transcript_html(box.history)
        mode = "greedy" if temperature.value == 0 else f"T={temperature.value:g}"
        status.value = f"<small>{len(tokenizer.encode(reply, add_special_tokens=False))} tokens, {mode}</small>"
        return reply

    def on_clear(_=None):
        box.history = box.history[:1] if system else []
        transcript.value = transcript_html(box.history)
        status.value = ""

    send.on_click(lambda _: submit())
    with warnings.catch_warnings():   # ipywidgets 8 marks on_submit deprecated; it is still the Enter key's event
        warnings.simplefilter("ignore", DeprecationWarning)
        message.on_submit(lambda _: submit())
    clear.on_click(on_clear)
    box.submit, box.reset = submit, on_clear
    return keep_initial_state(box, html=transcript.value)


__all__ = ["DEFAULT_SAMPLING", "sampling_kwargs", "fit_history", "respond", "transcript_html", "chat_box"]

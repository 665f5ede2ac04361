"""MiniMind's chat format (ChatML), rendered in one place.

Every message becomes `<|im_start|>{role}\\n{content}<|im_end|>\\n`; a conversation without a system
message gets the default one first; a prompt for the model ends with the generation prompt
`<|im_start|>assistant\\n`, after which the model writes its reply and closes it with `<|im_end|>`:

    <|im_start|>system
    You are a helpful assistant<|im_end|>
    <|im_start|>user
    Where does Mira live?<|im_end|>
    <|im_start|>assistant
    She lives in Selstead.<|im_end|>

`render_chat` is the text the tokenizer's Jinja template (`CHAT_TEMPLATE`) produces, in plain
Python; `render_with_spans` also says which characters a supervised fine-tuning (监督微调) run
trains; `prompt_ids` is what generation and evaluation feed the model. Nothing here needs torch.
"""
from __future__ import annotations

import json
from typing import Sequence

DEFAULT_SYSTEM = "You are a helpful assistant"
GENERATION_PROMPT = "<|im_start|>assistant\n"

# The same format as a Jinja template, saved with every tokenizer so that
# `tokenizer.apply_chat_template` agrees with render_chat. The string literals use Jinja escapes
# so that no template whitespace leaks in.
CHAT_TEMPLATE = (
    "{%- if not messages or messages[0]['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def render_message(role: str, content: str) -> str:
    """One ChatML message: `<|im_start|>{role}\\n{content}<|im_end|>\\n`."""
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


def render_chat(messages: Sequence[dict], add_generation_prompt: bool = False,
                default_system: str | None = DEFAULT_SYSTEM) -> str:
    """The chat template in plain Python (the same text as `tokenizer.apply_chat_template`)."""
    parts = []
    if default_system is not None and (not messages or messages[0]["role"] != "system"):
        parts.append(render_message("system", default_system))
    parts += [render_message(m["role"], m["content"]) for m in messages]
    if add_generation_prompt:
        parts.append(GENERATION_PROMPT)
    return "".join(parts)


def message_text(m: dict) -> str:
    """The text a message contributes inside its ChatML frame.

    Assistant `reasoning_content` is written before the reply as `<think>\\n...\\n</think>\\n`
    (the layout of MiniMind's reasoning data) and `tool_calls` after it, one
    `<tool_call>\\n{json}\\n</tool_call>` each. Other messages contribute their content.
    """
    content = m.get("content") or ""
    if m.get("role") == "assistant":
        reasoning = m.get("reasoning_content")
        if reasoning:
            content = f"<think>\n{reasoning}\n</think>\n{content}"
        for call in m.get("tool_calls") or []:
            fn = call.get("function", call) if isinstance(call, dict) else call
            content += f"\n<tool_call>\n{json.dumps(fn, ensure_ascii=False)}\n</tool_call>"
    return content


def render_with_spans(messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The chat text (exactly `render_chat`'s over `message_text`, default system message included
    when there is none) and the character spans that are trained: each assistant reply, the
    `<|im_end|>` that closes it and the newline after that."""
    msgs = [{"role": m["role"], "content": message_text(m)} for m in messages]
    parts, spans, pos = [], [], 0
    if not msgs or msgs[0]["role"] != "system":
        parts.append(render_message("system", DEFAULT_SYSTEM))
        pos = len(parts[0])
    for m in msgs:
        piece = render_message(m["role"], m["content"])
        if m["role"] == "assistant":
            header = len(f"<|im_start|>{m['role']}\n")
            spans.append((pos + header, pos + len(piece)))
        parts.append(piece)
        pos += len(piece)
    text = "".join(parts)
    assert text == render_chat(msgs), "chat rendering disagrees with render_chat"
    return text, spans


def prompt_ids(tokenizer, messages: str | Sequence[dict]) -> list[int]:
    """Token ids of the prompt that asks the model for the next reply: `messages` (a string is one
    user message) rendered with the generation prompt, special tokens written in the text."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    text = render_chat(list(messages), add_generation_prompt=True)
    return tokenizer.encode(text, add_special_tokens=False)


__all__ = ["DEFAULT_SYSTEM", "GENERATION_PROMPT", "CHAT_TEMPLATE", "render_message", "render_chat",
           "message_text", "render_with_spans", "prompt_ids"]

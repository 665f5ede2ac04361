"""The chat format with tools, tool calls, tool results and thinking (MiniMind-3's layout)."""
import json

import pytest

from minimind_core.chat import (CHAT_TEMPLATE, DEFAULT_SYSTEM, TOOLS_INTRO, TOOLS_OUTRO, render_chat,
                                render_with_spans)
from minimind_core.tokenizer import train_tokenizer

TRANSLATE = {"type": "function", "function": {
    "name": "translate_text", "description": "翻译文本",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"},
                                                    "target_language": {"type": "string"}}}}}
CALC = {"name": "calculate_math", "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}

# MiniMind's documented record, with tools and tool_calls as JSON strings as in its files
AS_STORED = [
    {"role": "system", "content": "你是一个助手。", "tools": json.dumps([TRANSLATE, CALC], ensure_ascii=False)},
    {"role": "user", "content": "把'你好世界'翻译成english"},
    {"role": "assistant", "content": "", "reasoning_content": "用户要翻译，调用工具。",
     "tool_calls": "[{\"name\":\"translate_text\",\"arguments\":{\"text\":\"你好世界\",\"target_language\":\"english\"}}]"},
    {"role": "tool", "content": "{\"translated_text\":\"Hello World\"}"},
    {"role": "assistant", "content": "Hello World"},
]

EXPECTED = (
    "<|im_start|>system\n你是一个助手。\n\n" + TOOLS_INTRO
    + "\n" + json.dumps(TRANSLATE, ensure_ascii=False) + "\n" + json.dumps(CALC, ensure_ascii=False)
    + TOOLS_OUTRO + "<|im_end|>\n"
    "<|im_start|>user\n把'你好世界'翻译成english<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n用户要翻译，调用工具。\n</think>\n\n"
    "<tool_call>\n{\"name\": \"translate_text\", \"arguments\": {\"text\": \"你好世界\", \"target_language\": \"english\"}}\n"
    "</tool_call><|im_end|>\n"
    "<|im_start|>user\n<tool_response>\n{\"translated_text\":\"Hello World\"}\n</tool_response><|im_end|>\n"
    "<|im_start|>assistant\nHello World<|im_end|>\n"
)


def decoded(messages):
    """The same messages with tools and tool_calls as arrays (what apply_chat_template takes)."""
    out = []
    for m in messages:
        m = dict(m)
        for key in ("tools", "tool_calls"):
            if isinstance(m.get(key), str):
                m[key] = json.loads(m[key])
        out.append(m)
    return out


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(["a small text to train on"] * 20, 300, tmp_path_factory.mktemp("tok"))


def test_tool_conversation_renders_as_minimind3():
    assert TOOLS_INTRO.startswith("# Tools\n") and TOOLS_INTRO.endswith("<tools>")
    assert render_chat(AS_STORED) == EXPECTED
    assert render_chat(decoded(AS_STORED)) == EXPECTED  # strings and arrays render alike
    assert DEFAULT_SYSTEM not in EXPECTED


def test_jinja_template_agrees_with_render_chat(tok):
    assert tok.chat_template == CHAT_TEMPLATE
    assert tok.apply_chat_template(decoded(AS_STORED), tokenize=False) == EXPECTED
    gen = tok.apply_chat_template(decoded(AS_STORED[:4]), tokenize=False, add_generation_prompt=True)
    assert gen == render_chat(AS_STORED[:4], add_generation_prompt=True)
    assert gen.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")
    # tools passed the Hugging Face way, to a conversation without a system message
    plain = [{"role": "user", "content": "256乘37？"}]
    want = render_chat(plain, tools=[CALC])
    assert want.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM}\n\n# Tools")
    assert tok.apply_chat_template(plain, tools=[CALC], tokenize=False) == want
    with pytest.raises(Exception, match="decode the tool_calls JSON string first"):
        tok.apply_chat_template(AS_STORED[1:3], tokenize=False)


def test_several_calls_and_consecutive_results():
    msgs = [{"role": "user", "content": "weather in Selstead and Eskby?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Selstead\"}"}},
                {"name": "weather", "arguments": {"city": "Eskby"}}]},
            {"role": "tool", "content": "rain"},
            {"role": "tool", "content": "sun"},
            {"role": "assistant", "content": "Rain in Selstead, sun in Eskby."}]
    text = render_chat(msgs)
    assert ("<|im_start|>assistant\nChecking.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": "
            "{\"city\": \"Selstead\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"weather\", \"arguments\": "
            "{\"city\": \"Eskby\"}}\n</tool_call><|im_end|>\n") in text
    assert ("<|im_start|>user\n<tool_response>\nrain\n</tool_response>\n<tool_response>\nsun\n"
            "</tool_response><|im_end|>\n<|im_start|>assistant\nRain") in text
    assert text.count("<|im_start|>user") == 2


def test_thinking_only_when_there_is_reasoning():
    plain = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert "<think>" not in render_chat(plain)
    thought = [plain[0], {"role": "assistant", "content": "\nhello", "reasoning_content": "\nbe kind\n"}]
    assert render_chat(thought).endswith("<|im_start|>assistant\n<think>\nbe kind\n</think>\n\nhello<|im_end|>\n")


def test_spans_cover_assistant_turns_only():
    text, spans = render_with_spans(AS_STORED)
    assert text == EXPECTED
    trained = [text[a:b] for a, b in spans]
    assert trained == [
        "<think>\n用户要翻译，调用工具。\n</think>\n\n<tool_call>\n{\"name\": \"translate_text\", \"arguments\": "
        "{\"text\": \"你好世界\", \"target_language\": \"english\"}}\n</tool_call><|im_end|>\n",
        "Hello World<|im_end|>\n"]

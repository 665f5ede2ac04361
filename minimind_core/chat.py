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

Tool calls and thinking follow MiniMind-3's template (which is Qwen3's), so that today's SFT
files train the layout a MiniMind-3 model expects:

* a system message that carries `tools` gets a `# Tools` block after its content, one JSON schema
  per line inside `<tools></tools>`, and the instruction to answer with `<tool_call>` blocks;
* an assistant turn with `reasoning_content` starts with `<think>\\n{reasoning}\\n</think>\\n\\n`,
  then its content, then one `<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>` per call;
* consecutive `tool` messages (the results) become ONE user turn of `<tool_response>` blocks:

    <|im_start|>assistant
    <tool_call>
    {"name": "weather", "arguments": {"city": "Selstead"}}
    </tool_call><|im_end|>
    <|im_start|>user
    <tool_response>
    {"sky": "rain"}
    </tool_response><|im_end|>

Two choices differ from MiniMind-3 on purpose. Plain conversations keep the MiniMind2 rendering
above: the default system message is still inserted, and an assistant turn without reasoning
has no empty `<think>\\n\\n</think>\\n\\n` (MiniMind-3 writes one in every turn and then deletes it
from 80% of its training samples); so the generation prompt stays `<|im_start|>assistant\\n`.

MiniMind's files store `tools` and `tool_calls` as JSON strings; everything here takes them as
strings or as decoded arrays (`jsonl` reports a string that is not valid JSON, with its line).

`render_chat` is the text the tokenizer's Jinja template (`CHAT_TEMPLATE`) produces, in plain
Python; `render_with_spans` also says which characters a supervised fine-tuning (监督微调) run
trains; `prompt_ids` is what generation and evaluation feed the model. Nothing here needs torch.
"""
from __future__ import annotations

import json
from typing import Sequence

DEFAULT_SYSTEM = "You are a helpful assistant"
GENERATION_PROMPT = "<|im_start|>assistant\n"

# The words of the tools block, as in MiniMind-3's (Qwen3's) template.
TOOLS_INTRO = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
               "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_OUTRO = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
               "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
               "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>")


def _jinja_str(s: str) -> str:
    """A Python string as a single-quoted Jinja string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


# The same format as a Jinja template, saved with every tokenizer so that
# `tokenizer.apply_chat_template(messages, tools=...)` gives render_chat's text. Jinja cannot parse
# JSON, so there `tools` and `tool_calls` must be arrays (a JSON string raises). The string
# literals use Jinja escapes so that no template whitespace leaks in.
_SYSTEM_WITH_TOOLS = (
    "{{ '<|im_start|>system\\n' + system_content + '\\n\\n' + " + _jinja_str(TOOLS_INTRO) + " }}"
    "{%- for tool in tools -%}{{ '\\n' }}{{ tool | tojson }}{%- endfor -%}"
    "{{ " + _jinja_str(TOOLS_OUTRO) + " + '<|im_end|>\\n' }}"
)
CHAT_TEMPLATE = "".join([
    "{%- if messages and messages[0]['role'] == 'system' and messages[0]['tools'] is defined"
    " and messages[0]['tools'] -%}",
    "{%- if messages[0]['tools'] is string -%}{{ raise_exception('decode the tools JSON string first') }}"
    "{%- endif -%}",
    "{%- set tools = tools or messages[0]['tools'] -%}",
    "{%- endif -%}",
    "{%- if not messages or messages[0]['role'] != 'system' -%}",
    "{%- if tools -%}{%- set system_content = '" + DEFAULT_SYSTEM + "' -%}" + _SYSTEM_WITH_TOOLS,
    "{%- else -%}{{ '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}{%- endif -%}",
    "{%- endif -%}",
    "{%- for message in messages -%}",
    "{%- set content = message['content'] if message['content'] is string else '' -%}",
    "{%- if message['role'] == 'tool' -%}",
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' -%}{{ '<|im_start|>user' }}{%- endif -%}",
    "{{ '\\n<tool_response>\\n' + content + '\\n</tool_response>' }}",
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' -%}{{ '<|im_end|>\\n' }}{%- endif -%}",
    "{%- elif message['role'] == 'assistant' -%}",
    "{{ '<|im_start|>assistant\\n' }}",
    "{%- if message['reasoning_content'] is string and message['reasoning_content'] -%}",
    "{%- set content = content.lstrip('\\n') -%}",
    "{{ '<think>\\n' + message['reasoning_content'].strip('\\n') + '\\n</think>\\n\\n' }}",
    "{%- endif -%}",
    "{{ content }}",
    "{%- if message['tool_calls'] is string -%}{{ raise_exception('decode the tool_calls JSON string first') }}"
    "{%- endif -%}",
    "{%- for call in (message['tool_calls'] or []) -%}",
    "{%- if not loop.first or content -%}{{ '\\n' }}{%- endif -%}",
    "{%- set call = call['function'] if call['function'] is defined else call -%}",
    "{{ '<tool_call>\\n{\"name\": \"' + call['name'] + '\", \"arguments\": ' }}",
    "{%- if call['arguments'] is string -%}{{ call['arguments'] }}",
    "{%- elif call['arguments'] is defined -%}{{ call['arguments'] | tojson }}{%- else -%}{{ '{}' }}{%- endif -%}",
    "{{ '}\\n</tool_call>' }}",
    "{%- endfor -%}",
    "{{ '<|im_end|>\\n' }}",
    "{%- elif message['role'] == 'system' and loop.first and tools -%}",
    "{%- set system_content = content -%}" + _SYSTEM_WITH_TOOLS,
    "{%- else -%}",
    "{{ '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}",
    "{%- endif -%}",
    "{%- endfor -%}",
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}",
])


def decode_json_field(value):
    """`tools` / `tool_calls` as stored: a JSON string (MiniMind's files) or already an array.
    None and the empty string mean "none"; a malformed string raises json.JSONDecodeError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        return json.loads(value)
    return value


def render_message(role: str, content: str) -> str:
    """One ChatML message: `<|im_start|>{role}\\n{content}<|im_end|>\\n`."""
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


def render_tool_call(call: dict) -> str:
    """`<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>`; an OpenAI-style call
    ({"function": {...}}) is unwrapped, and string arguments are written as they are."""
    fn = call.get("function", call)
    args = fn.get("arguments", {})
    args_text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return f'<tool_call>\n{{"name": "{fn["name"]}", "arguments": {args_text}}}\n</tool_call>'


def render_tools_system(content: str, tools: Sequence) -> str:
    """The system turn of a conversation with tools: its content, then the `# Tools` block."""
    schemas = "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
    return f"<|im_start|>system\n{content}\n\n{TOOLS_INTRO}{schemas}{TOOLS_OUTRO}<|im_end|>\n"


def assistant_body(m: dict) -> str:
    """What an assistant turn holds between its header and `<|im_end|>`: the thinking (when there
    is `reasoning_content`), the reply and the tool calls. It is all trained."""
    content = m.get("content") or ""
    reasoning = m.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        content = content.lstrip("\n")
        body = f"<think>\n{reasoning.strip(chr(10))}\n</think>\n\n{content}"
    else:
        body = content
    for i, call in enumerate(decode_json_field(m.get("tool_calls"))):
        body += ("\n" if i or content else "") + render_tool_call(call)
    return body


def render_turns(messages: Sequence[dict], default_system: str | None = DEFAULT_SYSTEM, tools=None
                 ) -> list[tuple[str, int]]:
    """The chat as (text, trained from) pieces, in order: a piece's characters from `trained from`
    on are trained (an assistant turn: everything after its `<|im_start|>assistant\\n` header), or
    none when it is -1. Joined, the pieces are `render_chat`'s text.

    The tools are `tools` when given, else those the first (system) message carries.
    """
    has_system = bool(messages) and messages[0]["role"] == "system"
    tools = decode_json_field(tools) or (decode_json_field(messages[0].get("tools")) if has_system else [])
    pieces: list[tuple[str, int]] = []
    if default_system is not None and not has_system:
        pieces.append((render_tools_system(default_system, tools) if tools
                       else render_message("system", default_system), -1))
    for i, m in enumerate(messages):
        role, content = m["role"], m.get("content") or ""
        if role == "assistant":
            pieces.append((f"{GENERATION_PROMPT}{assistant_body(m)}<|im_end|>\n", len(GENERATION_PROMPT)))
        elif role == "tool":
            first = i == 0 or messages[i - 1]["role"] != "tool"
            last = i == len(messages) - 1 or messages[i + 1]["role"] != "tool"
            text = ("<|im_start|>user" if first else "") + f"\n<tool_response>\n{content}\n</tool_response>"
            pieces.append((text + ("<|im_end|>\n" if last else ""), -1))
        elif role == "system" and i == 0 and tools:
            pieces.append((render_tools_system(content, tools), -1))
        else:
            pieces.append((render_message(role, content), -1))
    return pieces


def render_chat(messages: Sequence[dict], add_generation_prompt: bool = False,
                default_system: str | None = DEFAULT_SYSTEM, tools=None) -> str:
    """The chat template in plain Python: the same text as `tokenizer.apply_chat_template` with
    the same `tools` (default: those on the system message)."""
    text = "".join(piece for piece, _ in render_turns(messages, default_system, tools))
    return text + (GENERATION_PROMPT if add_generation_prompt else "")


def message_text(m: dict) -> str:
    """The text a message contributes inside its ChatML frame: for an assistant, its thinking,
    reply and tool calls (`assistant_body`); for any other message, its content."""
    return assistant_body(m) if m.get("role") == "assistant" else (m.get("content") or "")


def render_with_spans(messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The chat text (exactly `render_chat`'s, default system message included when there is
    none) and the character spans that are trained: each assistant turn's thinking, reply and
    tool calls, the `<|im_end|>` that closes it and the newline after that. System, user and
    tool-result text and the role headers are never trained."""
    parts, spans, pos = [], [], 0
    for piece, trained_from in render_turns(messages):
        if trained_from >= 0:
            spans.append((pos + trained_from, pos + len(piece)))
        parts.append(piece)
        pos += len(piece)
    return "".join(parts), spans


def prompt_ids(tokenizer, messages: str | Sequence[dict]) -> list[int]:
    """Token ids of the prompt that asks the model for the next reply: `messages` (a string is one
    user message) rendered with the generation prompt, special tokens written in the text."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    text = render_chat(list(messages), add_generation_prompt=True)
    return tokenizer.encode(text, add_special_tokens=False)


__all__ = ["DEFAULT_SYSTEM", "GENERATION_PROMPT", "CHAT_TEMPLATE", "TOOLS_INTRO", "TOOLS_OUTRO",
           "decode_json_field", "render_message", "render_tool_call", "render_tools_system",
           "assistant_body", "render_turns", "render_chat", "message_text", "render_with_spans",
           "prompt_ids"]

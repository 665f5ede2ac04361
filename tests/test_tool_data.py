"""Records shaped like MiniMind-3's documented SFT examples: `data check` accepts them (tools and
tool_calls as JSON strings or arrays, the tool role, reasoning_content), rejects a malformed JSON
string with file:line and field, and a smoke SFT run trains on them."""
import json
import math

import pytest

from minimind_core.cli import main

TRANSLATE = {"type": "function", "function": {"name": "translate_text", "description": "翻译文本", "parameters": {
    "type": "object", "properties": {"text": {"type": "string"}, "target_language": {"type": "string"}}}}}
CALC = {"type": "function", "function": {"name": "calculate_math", "description": "计算数学表达式", "parameters": {
    "type": "object", "properties": {"expression": {"type": "string"}}}}}


def documented_records() -> list:
    """MiniMind's README examples (as strings, the way its files store them), the same with arrays,
    a plain chat and a reply with its thinking."""
    translate = {"conversations": [
        {"role": "system", "content": "# Tools", "tools": json.dumps([TRANSLATE], ensure_ascii=False)},
        {"role": "user", "content": "把'你好世界'翻译成english"},
        {"role": "assistant", "content": "", "tool_calls": "[{\"name\":\"translate_text\",\"arguments\":"
                                                            "{\"text\":\"你好世界\",\"target_language\":\"english\"}}]"},
        {"role": "tool", "content": "{\"translated_text\":\"Hello World\"}"},
        {"role": "assistant", "content": "Hello World"}]}
    calc = {"conversations": [
        {"role": "system", "content": "# Tools", "tools": [CALC]},
        {"role": "user", "content": "帮我算一下 256 乘以 37 等于多少"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"name": "calculate_math", "arguments": {"expression": "256 * 37"}}]},
        {"role": "tool", "content": "{\"result\":\"9472\"}"},
        {"role": "assistant", "content": "256 乘以 37 等于 9472。"}]}
    plain = {"conversations": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"},
                               {"role": "user", "content": "再见"}, {"role": "assistant", "content": "再见！"}]}
    thinking = {"conversations": [
        {"role": "user", "content": "1+1=?"},
        {"role": "assistant", "content": "1+1=2。", "reasoning_content": "一加一等于二。"}]}
    return [translate, calc, plain, thinking] * 6


def write(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_data_check_accepts_minimind3_records(tmp_path, capsys):
    path = write(tmp_path / "sft_t2t_like.jsonl", documented_records())
    assert main(["data", "check", str(path), "--stage", "sft"]) == 0
    assert f"{path}: OK: 24 good sft records, 0 bad lines" in capsys.readouterr().out


@pytest.mark.parametrize("message, field, words", [
    ({"role": "assistant", "content": "", "tool_calls": "[{\"name\": \"calculate_math\", \"arguments\": {]"},
     '"conversations"[2].tool_calls', ["malformed JSON string", "expected a JSON array"]),
    ({"role": "assistant", "content": "", "tool_calls": "{\"name\": \"calculate_math\"}"},
     '"conversations"[2].tool_calls', ["expected an array, got object"]),
    ({"role": "assistant", "content": "", "tool_calls": [{"arguments": {}}]},
     '"conversations"[2].tool_calls[0].name', ["missing", "tool's name"]),
    ({"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": 3}}]},
     '"conversations"[2].tool_calls[0].function.arguments', ["expected an object or a JSON string"]),
    ({"role": "user", "content": "x", "tools": "[]"}, '"conversations"[2].tools', ["first message"]),
    ({"role": "assistant", "content": "x", "reasoning_content": ["a"]},
     '"conversations"[2].reasoning_content', ["expected a string, got array"]),
])
def test_data_check_names_line_and_field_of_a_bad_tool_record(tmp_path, capsys, message, field, words):
    good = documented_records()[1]
    bad = json.loads(json.dumps(good))
    bad["conversations"][2] = message
    path = write(tmp_path / "bad.jsonl", [good, good, bad])
    assert main(["data", "check", str(path), "--stage", "sft"]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith(f"{path}:3: "))
    assert f"field {field}: " in line, line
    for w in words:
        assert w in line, line
    assert "2 good sft records, 1 bad lines" in out


def test_malformed_tools_string_on_the_system_message(tmp_path, capsys):
    bad = documented_records()[0]
    bad["conversations"][0]["tools"] = "[{\"type\": \"function\","
    path = write(tmp_path / "bad.jsonl", [bad])
    assert main(["data", "check", str(path), "--stage", "sft"]) == 1
    assert f'{path}:1: field "conversations"[0].tools: malformed JSON string' in capsys.readouterr().out


def test_smoke_sft_trains_on_tool_records(tmp_path):
    from minimind_core.chat import render_chat
    from minimind_core.datasets import SFTDataset
    from minimind_core.tokenizer import load_tokenizer, train_tokenizer
    from minimind_core.train import train

    records = documented_records()
    data = write(tmp_path / "sft.jsonl", records)
    train_tokenizer([render_chat(r["conversations"]) for r in records] * 4, 400, tmp_path / "tok")
    tok = load_tokenizer(tmp_path / "tok")
    ds = SFTDataset(data, tok, seq_len=512, progress=False)
    assert len(ds) == 24 and ds.stats["no_target"] == 0
    call = tok.convert_tokens_to_ids("<tool_call>")
    first = ds[0]
    assert call in first["labels"].tolist()       # the call is trained ...
    assert (first["input_ids"] == call).sum() > (first["labels"] == call).sum()  # ... the system's mention is not

    text = write(tmp_path / "text.jsonl", [{"text": render_chat(r["conversations"])} for r in records])
    quiet = dict(progress=False, threads=1, cache_dir=tmp_path / "cache")
    pre = train("pretrain", profile="smoke", data=text, tokenizer=tmp_path / "tok", out=tmp_path / "pre",
                seq_len=128, max_steps=5, **quiet)
    result = train("sft", profile="smoke", data=data, init=pre.run_dir, out=tmp_path / "run",
                   seq_len=512, batch_size=4, max_steps=12, log_every=3, lr=3e-3, **quiet)
    losses = [r["loss"] for r in result.metrics]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.5, losses

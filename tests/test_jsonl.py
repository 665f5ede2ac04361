"""Streaming JSONL validation: every bad-input case names the file, the line and what was expected."""
import json

import numpy as np
import pytest

from minimind_core.cli import main
from minimind_core.errors import DataError
from minimind_core.jsonl import BadLines, LineIndex, check_file, detect_stage, iter_records, parse_line

GOOD_SFT = {"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write_lines(path, lines):
    with open(path, "wb") as f:
        for line in lines:
            if isinstance(line, (dict, list)):
                line = json.dumps(line, ensure_ascii=False)
            if isinstance(line, str):
                line = line.encode("utf-8")
            f.write(line + b"\n")
    return path


def first_error(path, stage):
    with pytest.raises(DataError) as exc:
        list(iter_records(path, stage))
    return exc.value


def conv(*msgs):
    return {"conversations": [dict(role=r, content=c) for r, c in msgs]}


# (stage, bad record or raw line, field, words the message must contain)
BAD_CASES = [
    ("pretrain", '{"text": "abc"', None, ["malformed JSON", "expected one JSON object per line"]),
    ("pretrain", b'{"text": "caf\xe9"}', None, ["invalid UTF-8", "expected UTF-8"]),
    ("pretrain", {"txt": "abc"}, '"text"', ["missing", '{"text": "..."}']),
    ("pretrain", {"text": 5}, '"text"', ["expected a string, got integer"]),
    ("pretrain", {"text": "  "}, '"text"', ["empty", "expected a non-empty string"]),
    ("pretrain", ["text"], None, ["expected a JSON object", "got array"]),
    ("sft", {"messages": []}, '"conversations"', ["missing", "expected {\"conversations\""]),
    ("sft", {"conversations": "hi"}, '"conversations"', ["expected an array of messages, got string"]),
    ("sft", {"conversations": []}, '"conversations"', ["empty conversation", "expected at least one"]),
    ("sft", conv(("user", "a"), ("assistant", "b"), ("bot", "c")), '"conversations"[2].role',
     ["unknown role 'bot'", "expected one of system, user, assistant, tool"]),
    ("sft", {"conversations": [{"content": "a"}]}, '"conversations"[0].role', ["missing", "expected one of"]),
    ("sft", {"conversations": [{"role": "user"}]}, '"conversations"[0].content', ["missing", "non-empty string"]),
    ("sft", conv(("user", "a"), ("assistant", "")), '"conversations"[1].content',
     ["empty", "expected a non-empty string"]),
    ("sft", {"conversations": [{"role": "user", "content": 3}]}, '"conversations"[0].content',
     ["expected a string, got integer"]),
    ("sft", {"conversations": ["hi"]}, '"conversations"[0]', ["expected a message object", "got string"]),
    ("sft", conv(("system", "s"), ("user", "a")), '"conversations"', ["no assistant message", "expected at least one"]),
    ("dpo", {"chosen": GOOD_SFT["conversations"]}, '"rejected"', ["missing", '"chosen"']),
    ("dpo", {"chosen": GOOD_SFT["conversations"], "rejected": [{"role": "user", "content": "x"}]},
     '"rejected"', ["no assistant message"]),
]


@pytest.mark.parametrize("stage,bad,field,words", BAD_CASES)
def test_bad_line_message_names_file_line_field_and_expectation(tmp_path, stage, bad, field, words):
    good = {"text": "ok"} if stage == "pretrain" else (
        GOOD_SFT if stage == "sft" else {"chosen": GOOD_SFT["conversations"], "rejected": GOOD_SFT["conversations"]})
    path = write_lines(tmp_path / "data.jsonl", [good, good, bad, good])
    err = first_error(path, stage)
    assert err.path == str(path) and err.line == 3 and err.field == field
    msg = str(err)
    assert msg.startswith(f"{path}:3: ")
    if field:
        assert f"field {field}: " in msg
    for w in words:
        assert w in msg, msg
    # the same line is skipped and counted with on_error="skip"
    report = BadLines()
    got = [n for n, _ in iter_records(path, stage, on_error="skip", report=report)]
    assert got == [1, 2, 4] and report.count == 1 and report.messages == [msg]


def test_unknown_role_message_exact(tmp_path):
    path = write_lines(tmp_path / "sft.jsonl", [GOOD_SFT] * 16 + [conv(("user", "a"), ("assistant", "b"), ("bot", "c"))])
    assert str(first_error(path, "sft")) == (
        f'{path}:17: field "conversations"[2].role: unknown role \'bot\'; '
        "expected one of system, user, assistant, tool")


def test_newer_message_fields_are_accepted(tmp_path):
    rec = {"conversations": [
        {"role": "system", "content": "tools: search"},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "reasoning_content": "I should search",
         "tool_calls": [{"type": "function", "function": {"name": "search", "arguments": "{}"}}]},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": None, "tool_calls": [{"name": "done"}]},
        {"role": "assistant", "content": "It is sunny.", "reasoning_content": "the tool said so"},
    ]}
    path = write_lines(tmp_path / "t.jsonl", [rec])
    assert [n for n, _ in iter_records(path, "sft")] == [1]
    bad = {"conversations": [{"role": "user", "content": "a", "tool_calls": []}, {"role": "assistant", "content": "b"}]}
    err = first_error(write_lines(tmp_path / "b.jsonl", [bad]), "sft")
    assert err.field == '"conversations"[0].tool_calls' and "only assistant" in str(err)
    bad = {"conversations": [{"role": "assistant", "content": "b", "reasoning_content": 1}]}
    err = first_error(write_lines(tmp_path / "c.jsonl", [bad]), "sft")
    assert err.field == '"conversations"[0].reasoning_content' and "expected a string" in str(err)


def test_stage_aliases_and_unknown_stage(tmp_path):
    path = write_lines(tmp_path / "l.jsonl", [GOOD_SFT])
    assert len(list(iter_records(path, "lora"))) == 1
    assert len(list(iter_records(path, "distill"))) == 1
    with pytest.raises(ValueError, match="unknown stage"):
        list(iter_records(path, "rlhf"))
    with pytest.raises(ValueError, match="on_error"):
        list(iter_records(path, "sft", on_error="ignore"))


def test_blank_lines_are_skipped_counted_and_keep_line_numbers(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [{"text": "a"}, "", "   \t", {"text": "b"}, "\r"])
    report = BadLines()
    got = [(n, r["text"]) for n, r in iter_records(path, "pretrain", report=report)]
    assert got == [(1, "a"), (4, "b")]
    assert report.blank == 3 and report.count == 0


def test_streaming_yields_before_reading_a_later_bad_line(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [{"text": "a"}, {"text": "b"}, "{oops"])
    it = iter_records(path, "pretrain")
    assert next(it) == (1, {"text": "a"})
    assert next(it)[0] == 2
    with pytest.raises(DataError, match=":3: malformed JSON"):
        next(it)


def test_skip_counts_and_summary(tmp_path, capsys):
    lines = [{"text": "a"}, "{", {"text": 1}, {"text": "b"}, b"\xff\xfe", {"x": 1}, {"text": "c"}, "[", "{"]
    path = write_lines(tmp_path / "p.jsonl", lines)
    report = BadLines(keep=3)
    got = [n for n, _ in iter_records(path, "pretrain", on_error="skip", report=report)]
    assert got == [1, 4, 7]
    assert report.count == 6 and len(report.messages) == 3
    assert report.messages[0].startswith(f"{path}:2: malformed JSON")
    assert report.summary() == f"skipped 6 bad lines (first: {report.messages[0]})"
    assert len(list(iter_records(path, "pretrain", on_error="skip"))) == 3
    assert f"{path}: skipped 6 bad lines (first: {path}:2: malformed JSON" in capsys.readouterr().err
    n_good, errors = check_file(path, "pretrain", max_errors=2)
    assert n_good == 3 and len(errors) == 2 and ":3: field \"text\"" in errors[1]


EVAL_ITEM = {"conversations": [{"role": "user", "content": "Where does Mira live?"},
                               {"role": "assistant", "content": "In Selstead."}],
             "expected": "Selstead", "choices": ["Selstead", "Brookmere"], "kind": "city", "lang": "en"}


@pytest.mark.parametrize("change, field, words", [
    (dict(expected=None), '"expected"', "expected a non-empty string, got null"),
    (dict(expected="  "), '"expected"', "empty; expected a non-empty string"),
    (dict(choices="Selstead"), '"choices"', "expected an array of strings, got string"),
    (dict(choices=["Selstead", ""]), '"choices"[1]', "empty; expected a non-empty string"),
    (dict(choices=["Selstead", 4]), '"choices"[1]', "expected a non-empty string, got integer"),
    (dict(lang=3), '"lang"', "expected a string, got integer"),
    (dict(conversations=[{"role": "assistant", "content": "x"}]), '"conversations"[0].role',
     "expected the question as a user message first, got 'assistant'"),
    (dict(conversations=[{"role": "user", "content": ""}]), '"conversations"[0].content', "empty"),
])
def test_eval_qa_schema_names_the_field(tmp_path, change, field, words):
    good = write_lines(tmp_path / "ok.jsonl", [EVAL_ITEM, {**EVAL_ITEM, "conversations": EVAL_ITEM["conversations"][:1]}])
    assert [n for n, _ in iter_records(good, "eval_qa")] == [1, 2]   # a reference answer is optional
    path = write_lines(tmp_path / "bad.jsonl", [EVAL_ITEM, {**EVAL_ITEM, **change}])
    err = first_error(path, "eval_qa")
    assert (err.line, err.field) == (2, field) and words in str(err)
    assert str(err).startswith(f"{path}:2: field {field}: ")
    missing = dict(EVAL_ITEM)
    del missing["expected"]
    assert first_error(write_lines(tmp_path / "m.jsonl", [missing]), "eval_qa").reason.startswith("missing")


def test_detect_stage_reads_the_first_record(tmp_path):
    assert detect_stage(write_lines(tmp_path / "p.jsonl", ["", {"text": "a"}, {"conversations": []}])) == "pretrain"
    assert detect_stage(write_lines(tmp_path / "s.jsonl", [GOOD_SFT])) == "sft"
    assert detect_stage(write_lines(tmp_path / "d.jsonl", [{"chosen": [], "rejected": []}])) == "dpo"
    with pytest.raises(DataError, match=r'x.jsonl:2: expected a "text" field \(pretrain\)'):
        detect_stage(write_lines(tmp_path / "x.jsonl", ["  ", {"prompt": "hi"}]))
    with pytest.raises(DataError, match=r"y.jsonl:1: malformed JSON"):
        detect_stage(write_lines(tmp_path / "y.jsonl", ["{"]))
    (tmp_path / "e.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"e.jsonl: empty file"):
        detect_stage(tmp_path / "e.jsonl")


def test_progress_sees_every_byte(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [{"text": "a"}, "", "{", {"text": "bé"}])
    seen = []
    got = list(iter_records(path, "pretrain", on_error="skip", report=BadLines(), progress=seen.append))
    assert len(got) == 2 and len(seen) == 4 and sum(seen) == path.stat().st_size


def test_parse_line_direct():
    assert parse_line(b"\n", "pretrain", "f", 1) is None
    assert parse_line('{"text": "你好"}\r\n'.encode(), "pretrain", "f", 1) == {"text": "你好"}


# ---------------------------------------------------------------------------------------------
# command line

def test_cli_check_bad_file_exits_1_with_messages(tmp_path, capsys):
    path = write_lines(tmp_path / "sft.jsonl", [GOOD_SFT, conv(("user", "a"), ("bot", "b")), "", "{", GOOD_SFT])
    rc = main(["data", "check", str(path), "--stage", "sft"])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"{path}:2: field \"conversations\"[1].role: unknown role 'bot'" in out
    assert f"{path}:4: malformed JSON" in out
    assert "2 good sft records, 2 bad lines, 1 blank" in out


def test_cli_check_max_errors(tmp_path, capsys):
    path = write_lines(tmp_path / "p.jsonl", ["{"] * 5 + [{"text": "a"}])
    rc = main(["data", "check", str(path), "--stage", "pretrain", "--max-errors", "2"])
    out = capsys.readouterr().out
    assert rc == 1
    assert out.count("malformed JSON") == 2 and "... and 3 more bad lines" in out
    assert "1 good pretrain records, 5 bad lines" in out


def test_cli_check_clean_file_exits_0(tmp_path, capsys):
    path = write_lines(tmp_path / "p.jsonl", [{"text": "a"}, {"text": "b"}])
    assert main(["data", "check", str(path), "--stage", "pretrain"]) == 0
    assert "OK: 2 good pretrain records, 0 bad lines" in capsys.readouterr().out


def test_cli_check_wrong_stage_reports_fields(tmp_path, capsys):
    path = write_lines(tmp_path / "p.jsonl", [{"text": "a"}])
    assert main(["data", "check", str(path), "--stage", "dpo"]) == 1
    assert f'{path}:1: field "chosen": missing' in capsys.readouterr().out


def test_cli_check_missing_file(tmp_path, capsys):
    rc = main(["data", "check", str(tmp_path / "nope.jsonl"), "--stage", "sft"])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.jsonl: no such file" in err


# ---------------------------------------------------------------------------------------------
# LineIndex

@pytest.mark.parametrize("chunk", [3, 7, 1 << 20])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_line_index_offsets(tmp_path, chunk, trailing_newline):
    lines = [b'{"text": "a"}', b"", b'{"text": "\xe4\xbd\xa0\xe5\xa5\xbd"}', b"  ", b'{"text": "long line here"}\r',
             b"", b'{"text": "z"}']
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    path = tmp_path / "x.jsonl"
    path.write_bytes(data)
    idx = LineIndex(path, chunk_bytes=chunk)
    expected = data.splitlines(keepends=True)
    assert idx.n_lines == len(expected) == len(idx)
    assert [idx.read(i) for i in range(idx.n_lines)] == expected
    assert idx.offsets[-1] == len(data) and idx.offsets.dtype == np.int64
    assert idx.nonblank.tolist() == [0, 2, 4, 6]
    assert idx.record(2, "pretrain") == {"text": "你好"}
    assert idx.record(1, "pretrain") is None
    with pytest.raises(IndexError):
        idx.read(idx.n_lines)


def test_line_index_empty_file_and_bad_line(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"")
    assert LineIndex(path).n_lines == 0
    path.write_bytes(b'{"text": "a"}\n{"text": 1}\n')
    with pytest.raises(DataError, match=r"e\.jsonl:2: field \"text\""):
        LineIndex(path).record(1, "pretrain")

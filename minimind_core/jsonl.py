"""Streaming JSONL readers that check every line against a training stage's schema.

MiniMind's data files are JSON Lines: one JSON object per line, UTF-8. The files are big
(`sft_t2t.jsonl` is 14 GB), so nothing here loads a whole file: records are read one line
at a time, and `LineIndex` remembers only where each line starts, so that a dataset can read
line i on demand.

Schemas (see data/README.md):

    pretrain            {"text": "..."}
    sft, lora, distill  {"conversations": [{"role": "user", "content": "..."}, ...]}
    dpo                 {"chosen": [messages...], "rejected": [messages...]}
    eval_qa             {"conversations": [question, reference...], "expected": "...", "choices": [...]}

A message is {"role": system|user|assistant|tool, "content": str}. As in MiniMind-3's files, the
first message, a system message, may carry "tools" (the tools' JSON schemas) and an assistant
message "tool_calls" ([{"name": ..., "arguments": {...}}, ...]), each an array or a JSON string
holding one; an assistant message may carry "reasoning_content" (its thinking, a string), and a
"tool" message holds a tool's result. A conversation needs at least one assistant message,
because only assistant tokens are trained (监督微调 trains the replies).

Every problem is reported as a `DataError` that names the file, the 1-based line and the field:

    data/sft.jsonl:17: field "conversations"[2].role: unknown role 'bot'; expected one of
    system, user, assistant, tool

Blank lines (empty or whitespace only) are not records and not errors: they are skipped and
counted (`BadLines.blank`), and line numbers still count them, so that they match an editor's.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

from .errors import DataError

ROLES = ("system", "user", "assistant", "tool")
STAGES = ("pretrain", "sft", "dpo")
STAGE_ALIASES = {"lora": "sft", "distill": "sft"}  # LoRA and distillation files use the SFT schema
EVAL_QA = "eval_qa"  # held-out questions with their answers (minimind_core.evaluate)
SCHEMAS = STAGES + (EVAL_QA,)

_EXAMPLES = {
    "pretrain": '{"text": "..."}',
    "sft": '{"conversations": [{"role": "user", "content": "..."}, '
           '{"role": "assistant", "content": "..."}]}',
    "dpo": '{"chosen": [messages...], "rejected": [messages...]}',
    "eval_qa": '{"conversations": [{"role": "user", "content": "..."}], "expected": "...", '
               '"choices": ["...", ...]}',
}


def normalize_stage(stage: str) -> str:
    """pretrain | sft | dpo | eval_qa; lora and distill map to sft."""
    s = STAGE_ALIASES.get(stage, stage)
    if s not in SCHEMAS:
        raise ValueError(f"unknown stage {stage!r}; expected one of pretrain, sft, dpo, lora, distill, eval_qa")
    return s


def example(stage: str) -> str:
    """A one-line example record of `stage`'s schema, for error messages."""
    return _EXAMPLES[normalize_stage(stage)]


# ---------------------------------------------------------------------------------------------
# validation of one record

def _type_name(v) -> str:
    if v is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            int: "integer", float: "number"}.get(type(v), type(v).__name__)


def _check_messages(value, field: str, need_assistant: bool = True):
    """Raise _Bad(field, reason) when `value` is not a valid message list."""
    if not isinstance(value, list):
        raise _Bad(field, f"expected an array of messages, got {_type_name(value)}")
    if not value:
        raise _Bad(field, "empty conversation; expected at least one user and one assistant message")
    for i, m in enumerate(value):
        _check_message(m, f"{field}[{i}]", first=i == 0)
    if need_assistant and not any(m["role"] == "assistant" for m in value):
        raise _Bad(field, "no assistant message; expected at least one (only assistant tokens are trained)")


def _check_message(m, f: str, first: bool) -> None:
    """One message: its role, the fields that role may carry, and its content."""
    if not isinstance(m, dict):
        raise _Bad(f, f'expected a message object {{"role": ..., "content": ...}}, got {_type_name(m)}')
    if "role" not in m:
        raise _Bad(f"{f}.role", "missing; expected one of " + ", ".join(ROLES))
    role = m["role"]
    if not isinstance(role, str):
        raise _Bad(f"{f}.role", f"expected a string, got {_type_name(role)}")
    if role not in ROLES:
        raise _Bad(f"{f}.role", f"unknown role {role!r}; expected one of " + ", ".join(ROLES))
    if _present(m.get("tools")):
        if role != "system" or not first:
            raise _Bad(f"{f}.tools", "tools belong on the first message, a system message")
        for j, tool in enumerate(_json_array(m["tools"], f"{f}.tools")):
            if not isinstance(tool, dict):
                raise _Bad(f"{f}.tools[{j}]", f"expected a JSON schema object, got {_type_name(tool)}")
    tool_calls = m.get("tool_calls")
    if _present(tool_calls):
        if role != "assistant":
            raise _Bad(f"{f}.tool_calls", f"only assistant messages may carry tool calls, not {role!r}")
        tool_calls = _json_array(tool_calls, f"{f}.tool_calls")
        for j, call in enumerate(tool_calls):
            _check_tool_call(call, f"{f}.tool_calls[{j}]")
    reasoning = m.get("reasoning_content")
    if reasoning is not None and not isinstance(reasoning, str):
        raise _Bad(f"{f}.reasoning_content", f"expected a string, got {_type_name(reasoning)}")
    content = m.get("content", _MISSING)
    if tool_calls and content in (_MISSING, None):  # a turn that only calls tools may omit its text
        return
    if content is _MISSING:
        raise _Bad(f"{f}.content", "missing; expected a non-empty string")
    if not isinstance(content, str):
        raise _Bad(f"{f}.content", f"expected a string, got {_type_name(content)}")
    # a tool may return nothing; an assistant turn may be only thinking or only tool calls
    if role != "tool" and not content.strip() and not tool_calls and not reasoning:
        raise _Bad(f"{f}.content", "empty; expected a non-empty string")


_MISSING = object()


def _present(value) -> bool:
    """Whether an optional `tools` / `tool_calls` field holds anything (null and "" do not)."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def _json_array(value, field: str) -> list:
    """`tools` / `tool_calls`: an array, or a JSON string holding one (as in MiniMind's files)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise _Bad(field, f"malformed JSON string: {e.msg} (character {e.pos + 1}); "
                              "expected a JSON array as a string, or an array") from None
    if not isinstance(value, list):
        raise _Bad(field, f"expected an array, got {_type_name(value)}")
    return value


def _check_tool_call(call, f: str) -> None:
    """{"name": str, "arguments": object or JSON string}, or the OpenAI form {"function": {...}}."""
    if not isinstance(call, dict):
        raise _Bad(f, f'expected a call object {{"name": ..., "arguments": {{...}}}}, got {_type_name(call)}')
    if "function" in call:
        call, f = call["function"], f"{f}.function"
        if not isinstance(call, dict):
            raise _Bad(f, f"expected an object, got {_type_name(call)}")
    name = call.get("name")
    if not isinstance(name, str) or not name.strip():
        why = "missing" if name is None else f"got {_type_name(name)}" if not isinstance(name, str) else "empty"
        raise _Bad(f"{f}.name", f"{why}; expected the tool's name as a non-empty string")
    args = call.get("arguments", {})
    if not isinstance(args, (dict, str)):
        raise _Bad(f"{f}.arguments", f"expected an object or a JSON string, got {_type_name(args)}")


class _Bad(Exception):
    def __init__(self, field, reason):
        self.field, self.reason = field, reason


def validate_record(obj, stage: str) -> dict:
    """Check one decoded JSON value against `stage`'s schema; raise _Bad(field, reason)."""
    stage = normalize_stage(stage)
    if not isinstance(obj, dict):
        raise _Bad(None, f"expected a JSON object like {_EXAMPLES[stage]}, got {_type_name(obj)}")
    if stage == "pretrain":
        if "text" not in obj:
            raise _Bad('"text"', f"missing; expected {_EXAMPLES[stage]}")
        if not isinstance(obj["text"], str):
            raise _Bad('"text"', f"expected a string, got {_type_name(obj['text'])}")
        if not obj["text"].strip():
            raise _Bad('"text"', "empty; expected a non-empty string")
    elif stage == "sft":
        if "conversations" not in obj:
            raise _Bad('"conversations"', f"missing; expected {_EXAMPLES[stage]}")
        _check_messages(obj["conversations"], '"conversations"')
    elif stage == "dpo":
        for key in ("chosen", "rejected"):
            if key not in obj:
                raise _Bad(f'"{key}"', f"missing; expected {_EXAMPLES[stage]}")
            _check_messages(obj[key], f'"{key}"')
    else:
        _check_eval_item(obj)
    return obj


def _check_eval_item(obj: dict) -> None:
    """An eval_qa record: the question first (a user message, maybe followed by a reference
    answer), the `expected` answer and the other `choices` a reply must not name."""
    if "conversations" not in obj:
        raise _Bad('"conversations"', f"missing; expected {_EXAMPLES[EVAL_QA]}")
    msgs = obj["conversations"]
    _check_messages(msgs, '"conversations"', need_assistant=False)
    if msgs[0]["role"] != "user":
        raise _Bad('"conversations"[0].role',
                   f"expected the question as a user message first, got {msgs[0]['role']!r}")
    if "expected" not in obj:
        raise _Bad('"expected"', "missing; expected the correct answer as a non-empty string")
    _check_answer(obj["expected"], '"expected"')
    choices = obj.get("choices", [])
    if not isinstance(choices, list):
        raise _Bad('"choices"', f"expected an array of strings, got {_type_name(choices)}")
    for i, c in enumerate(choices):
        _check_answer(c, f'"choices"[{i}]')
    for key in ("kind", "lang"):
        if key in obj and not isinstance(obj[key], str):
            raise _Bad(f'"{key}"', f"expected a string, got {_type_name(obj[key])}")


def _check_answer(value, field: str) -> None:
    if not isinstance(value, str):
        raise _Bad(field, f"expected a non-empty string, got {_type_name(value)}")
    if not value.strip():
        raise _Bad(field, "empty; expected a non-empty string")


def _decode(raw: bytes, path, line_no: int):
    """The JSON value of one non-blank raw line; DataError for bad UTF-8 or malformed JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, line_no, f"invalid UTF-8 at byte {e.start} of the line "
                                       f"({raw[e.start:e.start + 4]!r}); expected UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, line_no, f"malformed JSON: {e.msg} (column {e.colno}); "
                                       f"expected one JSON object per line") from None


def parse_line(raw: bytes, stage: str, path, line_no: int):
    """Decode, parse and validate one raw line. Returns the record, or None for a blank line.

    Raises DataError naming `path`, `line_no` and the field.
    """
    if not raw.strip():
        return None
    obj = _decode(raw, path, line_no)
    try:
        return validate_record(obj, stage)
    except _Bad as b:
        raise DataError(path, line_no, b.reason, b.field) from None


def detect_stage(path) -> str:
    """The schema of a data file, from its first record: "pretrain" ({"text"}), "sft"
    ({"conversations"}) or "dpo" ({"chosen", "rejected"}); a DataError when it is none of them."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            obj = _decode(raw, path, line_no)
            if isinstance(obj, dict):
                for key, stage in (("text", "pretrain"), ("conversations", "sft"), ("chosen", "dpo")):
                    if key in obj:
                        return stage
            raise DataError(path, line_no, 'expected a "text" field (pretrain), "conversations" (sft) or '
                                           '"chosen" and "rejected" (dpo)')
    raise DataError(path, 0, "empty file; expected one JSON object per line")


# ---------------------------------------------------------------------------------------------
# streaming over a file

class BadLines:
    """What `on_error="skip"` left out: `count` bad lines, the first `keep` messages, `blank` lines."""

    def __init__(self, keep: int = 5):
        self.keep = keep
        self.count = 0
        self.blank = 0
        self.messages: list[str] = []
        self.errors: list[DataError] = []

    def add(self, err: DataError):
        self.count += 1
        if len(self.messages) < self.keep:
            self.messages.append(str(err))
            self.errors.append(err)

    def __bool__(self):
        return self.count > 0

    def summary(self) -> str:
        if not self.count:
            return "no bad lines"
        s = f"skipped {self.count} bad line{'s' if self.count != 1 else ''} (first: {self.messages[0]})"
        return s

    def __repr__(self):
        return f"BadLines(count={self.count}, blank={self.blank}, first={self.messages[:1]})"


def check_on_error(on_error: str) -> None:
    """Reject an `on_error` other than "raise" or "skip" before any line is read."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def iter_records(path, stage: str, on_error: str = "raise", report: BadLines | None = None,
                 progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line_no, record) for every valid line of a JSONL file, streaming.

    `stage`: pretrain | sft | dpo | eval_qa (lora and distill use sft). `on_error="raise"` raises
    the first DataError; `"skip"` leaves bad lines out and counts them in `report` (a BadLines),
    so that the caller can print `report.summary()` (without a `report`, the summary is printed
    to stderr when the file is done). Blank lines are skipped and counted in `report.blank`.
    `progress`, when given, is called with the size in bytes of every line read (a progress bar).
    """
    check_on_error(on_error)
    stage = normalize_stage(stage)
    path = Path(path)
    own_report = report is None
    if own_report:  # nobody will read the counts: print them at the end instead
        report = BadLines()
    yield from _iter_lines(path, stage, on_error, report, progress)
    if own_report and report.count:
        import sys

        print(f"{path}: {report.summary()}", file=sys.stderr)


def _iter_lines(path: Path, stage: str, on_error: str, report: BadLines, progress):
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if progress is not None:
                progress(len(raw))
            try:
                rec = parse_line(raw, stage, path, line_no)
            except DataError as e:
                if on_error == "raise":
                    raise
                report.add(e)
                continue
            if rec is None:
                report.blank += 1
                continue
            yield line_no, rec


def check_file(path, stage: str, max_errors: int = 20,
               report: BadLines | None = None) -> tuple[int, list[str]]:
    """Validate a whole file. Returns (number of good records, the first `max_errors` messages).

    Pass a BadLines as `report` to get the total number of bad and blank lines.
    """
    if report is None:
        report = BadLines(keep=max_errors)
    else:
        report.keep = max_errors
    n_good = sum(1 for _ in iter_records(path, stage, on_error="skip", report=report))
    return n_good, list(report.messages)


# ---------------------------------------------------------------------------------------------
# random access

class LineIndex:
    """Byte offsets of every line of a file, from one streaming pass (8 bytes per line).

    `offsets[i]` is where physical line i (0-based; line number i + 1) starts, and
    `offsets[n_lines]` is the file size. `nonblank` lists the lines that hold anything but
    whitespace: the records a dataset indexes. Nothing is cached on disk.
    """

    def __init__(self, path, chunk_bytes: int = 1 << 24):
        import numpy as np  # here, not at the top: `data check` streams without numpy

        self.path = Path(path)
        st = os.stat(self.path)
        self.size, self.mtime_ns = st.st_size, st.st_mtime_ns
        starts, nonblank = [np.zeros(1, dtype=np.int64)], []
        pos = 0              # file offset of buf[0]
        carry = b""
        with open(self.path, "rb") as f:
            while True:
                chunk = f.read(chunk_bytes)
                buf = carry + chunk
                if not buf:
                    break
                arr = np.frombuffer(buf, dtype=np.uint8)
                nl = np.flatnonzero(arr == 10)
                if not chunk:  # end of file: a last line without a newline ends at EOF
                    ends = np.append(nl + 1, len(arr)) if (not len(nl) or nl[-1] != len(arr) - 1) else nl + 1
                else:
                    ends = nl + 1
                if len(ends):
                    begins = np.concatenate(([0], ends[:-1]))
                    # a record starts with "{": only lines that do not need a closer look
                    nb = arr[begins] == 0x7B
                    for j in np.flatnonzero(~nb):
                        nb[j] = bool(buf[begins[j]:ends[j]].strip())
                    n_before = sum(len(s) for s in starts) - 1
                    nonblank.append(np.flatnonzero(nb) + n_before)
                    starts.append(ends.astype(np.int64) + pos)
                    used = int(ends[-1])
                else:
                    used = 0
                carry = buf[used:]
                pos += used
                if not chunk:
                    break
        self.offsets = np.concatenate(starts)
        self.nonblank = np.concatenate(nonblank) if nonblank else np.zeros(0, dtype=np.int64)
        self.n_lines = len(self.offsets) - 1
        self._fh = None

    def __len__(self):
        return self.n_lines

    def read(self, i: int) -> bytes:
        """Raw bytes of physical line i (0-based), newline included."""
        if not 0 <= i < self.n_lines:
            raise IndexError(f"line index {i} out of range for {self.path} ({self.n_lines} lines)")
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        if self._fh is None or self._pid != os.getpid():  # one handle per (DataLoader worker) process
            self._fh = open(self.path, "rb")
            self._pid = os.getpid()
        self._fh.seek(start)
        return self._fh.read(end - start)

    def record(self, i: int, stage: str):
        """Parse and validate physical line i (0-based); None for a blank line; DataError if bad."""
        return parse_line(self.read(i), stage, self.path, i + 1)

    def check_unchanged(self):
        st = os.stat(self.path)
        if (st.st_size, st.st_mtime_ns) != (self.size, self.mtime_ns):
            raise RuntimeError(f"{self.path} changed after it was indexed; rebuild the dataset")

    def __getstate__(self):  # picklable for DataLoader workers (open files are not)
        d = dict(self.__dict__)
        d["_fh"] = None
        return d

    def __del__(self):
        fh = getattr(self, "_fh", None)
        if fh is not None:
            try:
                fh.close()
            except Exception:
                pass

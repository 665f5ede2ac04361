"""`serve`: a real uvicorn server on 127.0.0.1, talked to with the official openai client."""
import socket
import threading
import time

import pytest

from course_model import PROMPTS, write_course_model
from minimind_core.generate import chat, chat_prompt_ids

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

MAX_TOKENS = 24
START_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(ChatModel, base URL, client): a server on a free loopback port, always shut down after."""
    from minimind_core.serve import ChatModel, create_app

    run = write_course_model(tmp_path_factory.mktemp("serve") / "run")
    chat_model = ChatModel(run, name="course-test")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(chat_model), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not srv.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.started, "the server did not start"
        base = f"http://127.0.0.1:{port}/v1"
        client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)
        yield chat_model, base, client
    finally:
        srv.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


def _greedy_library(chat_model, messages, max_tokens=MAX_TOKENS):
    return chat(chat_model.model, chat_model.tokenizer, messages, max_new_tokens=max_tokens, do_sample=False)


def test_models_lists_the_model(server):
    _, base, client = server
    assert [m.id for m in client.models.list()] == ["course-test"]
    assert client.models.retrieve("course-test").owned_by == "minimind-course"
    assert httpx.get(f"{base}/models/other", timeout=30).status_code == 404


def test_temperature_0_streamed_and_not_give_the_librarys_greedy_reply(server):
    chat_model, _, client = server
    for prompt in PROMPTS[:4]:
        messages = [{"role": "user", "content": prompt}]
        expected = _greedy_library(chat_model, messages)
        assert len(expected) > 5
        whole = client.chat.completions.create(model="course-test", messages=messages, temperature=0,
                                               max_tokens=MAX_TOKENS)
        choice = whole.choices[0]
        assert choice.message.role == "assistant" and choice.message.content == expected
        assert choice.finish_reason in ("stop", "length")
        prompt_tokens = chat_prompt_ids(chat_model.tokenizer, messages).shape[1]
        assert whole.usage.prompt_tokens == prompt_tokens
        assert 1 <= whole.usage.completion_tokens <= MAX_TOKENS
        assert whole.usage.total_tokens == prompt_tokens + whole.usage.completion_tokens

        stream = client.chat.completions.create(model="course-test", messages=messages, temperature=0,
                                                max_tokens=MAX_TOKENS, stream=True,
                                                stream_options={"include_usage": True})
        pieces, finishes, usage = [], [], None
        for ch in stream:
            if ch.usage is not None:
                usage = ch.usage
            for c in ch.choices:
                if c.delta.content:
                    pieces.append(c.delta.content)
                if c.finish_reason:
                    finishes.append(c.finish_reason)
        assert "".join(pieces) == expected and len(pieces) > 1
        assert finishes == [choice.finish_reason]
        assert usage.completion_tokens == whole.usage.completion_tokens


def test_raw_stream_is_server_sent_events_ending_in_done(server):
    _, base, _ = server
    body = {"model": "course-test", "messages": [{"role": "user", "content": "hi"}], "temperature": 0,
            "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]" and '"role": "assistant"' in lines[0]


def test_stop_strings_max_tokens_and_multi_part_content(server):
    chat_model, _, client = server
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": PROMPTS[1]}]
    full = _greedy_library(chat_model, messages)
    stop = full[len(full) // 2: len(full) // 2 + 2]
    expected = full[:full.find(stop)]
    for stream in (False, True):
        r = client.chat.completions.create(model="course-test", messages=messages, temperature=0,
                                           max_tokens=MAX_TOKENS, stop=[stop, "never-appears"], stream=stream)
        if stream:
            parts = list(r)
            text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
            finish = [c.choices[0].finish_reason for c in parts if c.choices and c.choices[0].finish_reason]
            assert (text, finish) == (expected, ["stop"])
        else:
            assert (r.choices[0].message.content, r.choices[0].finish_reason) == (expected, "stop")
    short = client.chat.completions.create(model="course-test", messages=messages, temperature=0, max_tokens=3)
    assert short.usage.completion_tokens <= 3
    assert short.choices[0].message.content == _greedy_library(chat_model, messages, max_tokens=3)
    parts = [{"role": "user", "content": [{"type": "text", "text": PROMPTS[0][:3]},
                                          {"type": "text", "text": PROMPTS[0][3:]}]}]
    r = client.chat.completions.create(model="course-test", messages=parts, temperature=0, max_tokens=MAX_TOKENS)
    assert r.choices[0].message.content == _greedy_library(chat_model, [{"role": "user", "content": PROMPTS[0]}])


def test_sampling_with_a_seed_repeats(server):
    _, _, client = server
    kw = dict(model="course-test", messages=[{"role": "user", "content": PROMPTS[3]}], temperature=1.0,
              top_p=0.9, max_tokens=MAX_TOKENS)
    a = client.chat.completions.create(seed=7, **kw).choices[0].message.content
    b = client.chat.completions.create(seed=7, **kw).choices[0].message.content
    assert a == b and a


@pytest.mark.parametrize("change, param, words", [
    ({"n": 2}, "n", "only n=1"),
    ({"temperature": 5}, "temperature", "between 0 and 2"),
    ({"max_tokens": 0}, "max_tokens", "between 1"),
    ({"messages": []}, "messages", "non-empty list"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", "'tool' is not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content", "only text parts"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "up to 4"),
    ({"stream": "yes"}, "stream", "true or false"),
])
def test_bad_requests_get_a_400_in_openais_shape(server, change, param, words):
    _, base, client = server
    body = {"model": "course-test", "messages": [{"role": "user", "content": "hi"}], **change}
    r = httpx.post(f"{base}/chat/completions", json=body, timeout=60)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and words in err["message"]
    assert set(err) == {"message", "type", "param", "code"}


def test_the_openai_client_raises_bad_request(server):
    _, base, client = server
    with pytest.raises(openai.BadRequestError, match="only n=1"):
        client.chat.completions.create(model="course-test", messages=[{"role": "user", "content": "hi"}], n=2)
    r = httpx.post(f"{base}/chat/completions", content=b"{not json", timeout=60)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    long = [{"role": "user", "content": "很长 " * 400}]
    with pytest.raises(openai.BadRequestError, match="at most 256"):
        client.chat.completions.create(model="course-test", messages=long)


def test_serve_command_in_its_own_process(tmp_path):
    """`python -m minimind_core serve` as a learner starts it; stopped with Ctrl-C (SIGINT)."""
    import os
    import signal
    import subprocess
    import sys

    run = write_course_model(tmp_path / "run")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "minimind_core", "serve", "--model", str(run), "--port", str(port),
                             "--name", "cli-test"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{base}/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)
        assert [m.id for m in client.models.list()] == ["cli-test"]
        reply = client.chat.completions.create(model="cli-test", messages=[{"role": "user", "content": "hi"}],
                                               temperature=0, max_tokens=8)
        assert reply.choices[0].message.content and reply.usage.completion_tokens <= 8
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=30)
    assert f"on http://127.0.0.1:{port}/v1" in out and proc.returncode in (0, 130)

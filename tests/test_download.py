"""`data download` against a local HTTP server that plays both hubs; nothing here touches the internet."""
from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from minimind_core import download as dl
from minimind_core.cli import main

NAME = "rlaif.jsonl"
PAYLOAD = random.Random(0).randbytes(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MS_PREFIX = f"/datasets/{dl.MODELSCOPE_REPO}/resolve/{dl.MODELSCOPE_REVISION}/"
HF_PREFIX = f"/datasets/{dl.HF_REPO}/resolve/{dl.HF_REVISION}/"
MS_API = f"/api/v1/datasets/{dl.MODELSCOPE_REPO}/repo/tree"


class Hub:
    """Behaviour switches of the fake hubs, changed per test."""

    def __init__(self):
        self.files = {NAME: PAYLOAD}
        self.ms_missing = False        # ModelScope answers 404 for everything
        self.ms_sha = None             # a wrong sha256 to publish on ModelScope
        self.hf_sha = None             # a wrong sha256 to publish on Hugging Face
        self.honor_range = True
        self.hf_plain = False          # Hugging Face redirect without X-Linked-* headers
        self.storage_refuses_head = False  # signed storage URLs that answer HEAD with 403
        self.cut_after = []            # per GET: close the connection after this many body bytes
        self.log = []                  # (method, path, Range header)


def _handler(hub: Hub):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, code, headers=(), body=b""):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            self._route()

        def do_GET(self):
            self._route()

        def _route(self):
            u = urlparse(self.path)
            hub.log.append((self.command, u.path, self.headers.get("Range")))
            if u.path.startswith(MS_PREFIX) or u.path == MS_API:
                if hub.ms_missing:
                    return self._send(404, body=b"not found")
                if u.path == MS_API:
                    q = parse_qs(u.query)
                    assert q["Revision"] == [dl.MODELSCOPE_REVISION]
                    files = [{"Name": n, "Path": n, "Type": "blob", "Size": len(b),
                              "Sha256": hub.ms_sha or hashlib.sha256(b).hexdigest()}
                             for n, b in hub.files.items()]
                    body = json.dumps({"Code": 200, "Data": {"Files": files}}).encode()
                    return self._send(200, [("Content-Type", "application/json")], body)
                return self._serve(unquote(u.path[len(MS_PREFIX):]))
            if u.path.startswith(HF_PREFIX):
                name = unquote(u.path[len(HF_PREFIX):])
                if name not in hub.files:
                    return self._send(404, body=b"Entry not found")
                data = hub.files[name]
                if hub.hf_plain:
                    return self._send(302, [("Location", f"/storage/{name}?sig=x")])
                # LFS files: redirect to the storage, with the file's sha256 and size on the redirect
                return self._send(302, [("Location", f"/storage/{name}?sig=x"),
                                        ("X-Linked-Size", str(len(data))),
                                        ("X-Linked-Etag", f'"{hub.hf_sha or hashlib.sha256(data).hexdigest()}"'),
                                        ("ETag", '"0123abcd"')])
            if u.path.startswith("/storage/"):
                if self.command == "HEAD" and hub.storage_refuses_head:
                    return self._send(403, body=b"signature does not match")
                return self._serve(unquote(u.path[len("/storage/"):]))
            self._send(404, body=b"no route")

        def _serve(self, name):
            if name not in hub.files:
                return self._send(404, body=b"not found")
            data = hub.files[name]
            start = 0
            rng = self.headers.get("Range")
            if rng and hub.honor_range:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(data):
                    return self._send(416, [("Content-Range", f"bytes */{len(data)}")])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if self.command == "HEAD":
                return
            if self.command == "GET" and hub.cut_after:
                cut = hub.cut_after.pop(0)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
            self.wfile.write(body)

    return H


@pytest.fixture
def hub(monkeypatch):
    h = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(h))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MINIMIND_MODELSCOPE_URL", base)
    monkeypatch.setenv("MINIMIND_HF_URL", base)
    yield h
    server.shutdown()
    server.server_close()


def fetch(tmp_path, source="auto", **kw):
    messages = []
    kw.setdefault("retry_wait", 0)
    kw.setdefault("timeout", 5)
    path = dl.download(NAME, tmp_path, source, progress=False, log=messages.append, **kw)
    return path, "\n".join(messages)


def gets(hub):
    return [(p, r) for m, p, r in hub.log if m == "GET" and not p.startswith("/api/")]


def test_registry_names_and_urls(monkeypatch):
    monkeypatch.delenv("MINIMIND_MODELSCOPE_URL", raising=False)
    monkeypatch.delenv("MINIMIND_HF_URL", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert set(dl.REGISTRY) == {"pretrain_t2t_mini.jsonl", "pretrain_t2t.jsonl", "sft_t2t_mini.jsonl",
                                "sft_t2t.jsonl", "dpo.jsonl", "rlaif.jsonl", "agent_rl.jsonl",
                                "agent_rl_math.jsonl"}
    assert {f.name: f.stage for f in dl.REGISTRY.values() if f.stage in ("pretrain", "sft", "dpo")} == {
        "pretrain_t2t_mini.jsonl": "pretrain", "pretrain_t2t.jsonl": "pretrain", "sft_t2t_mini.jsonl": "sft",
        "sft_t2t.jsonl": "sft", "dpo.jsonl": "dpo"}
    assert dl.REGISTRY["sft_t2t.jsonl"].approx_size == 14 * dl.GB and dl.REGISTRY["dpo.jsonl"].approx_size == 53 * dl.MB
    assert dl.resolve_name("sft_t2t_mini") is dl.resolve_name("sft_t2t_mini.jsonl")
    with pytest.raises(ValueError, match="did you mean sft_t2t_mini"):
        dl.resolve_name("sft_t2tmini")
    assert dl.file_url("modelscope", "dpo.jsonl") == \
        "https://www.modelscope.cn/datasets/gongjy/minimind_dataset/resolve/master/dpo.jsonl"
    assert dl.file_url("huggingface", "dpo.jsonl") == \
        "https://huggingface.co/datasets/jingyaogong/minimind_dataset/resolve/main/dpo.jsonl"
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com/")
    assert dl.file_url("huggingface", "dpo.jsonl").startswith("https://hf-mirror.com/datasets/")
    monkeypatch.setenv("MINIMIND_HF_URL", "http://localhost:1")
    assert dl.file_url("huggingface", "dpo.jsonl").startswith("http://localhost:1/datasets/")


def test_full_download_verified(hub, tmp_path):
    path, msg = fetch(tmp_path)
    assert path == tmp_path / NAME and path.read_bytes() == PAYLOAD
    assert not (tmp_path / (NAME + ".part")).exists()
    assert gets(hub) == [(MS_PREFIX + NAME, None)]  # ModelScope first, one plain GET
    state = json.loads((tmp_path / "cache" / "download" / f"{NAME}.json").read_text())
    assert state["verified"]["sha256"] == SHA and "partial" not in state


def test_huggingface_metadata_from_linked_headers(hub):
    remote = dl.remote_metadata("huggingface", NAME, timeout=5)
    assert (remote.size, remote.sha256) == (len(PAYLOAD), SHA)
    hub.hf_sha = "ab" * 32
    assert dl.remote_metadata("huggingface", NAME, timeout=5).sha256 == "ab" * 32


def test_size_only_when_no_checksum_is_published(hub, tmp_path):
    hub.hf_plain = hub.storage_refuses_head = True
    hub.cut_after = [90_000]
    path, msg = fetch(tmp_path, source="huggingface", retries=1)
    assert path.read_bytes() == PAYLOAD
    assert "published no sha256" in msg and SHA in msg and "checked by size only" in msg
    ranges = [r for p, r in gets(hub) if p.startswith("/storage/")]
    assert ranges == [None, "bytes=90000-"]


def test_interrupted_then_resumed_with_range(hub, tmp_path):
    hub.cut_after = [100_000]
    with pytest.raises(dl.DownloadError, match="run the command again to resume") as e:
        fetch(tmp_path, source="modelscope", retries=0)
    part = tmp_path / (NAME + ".part")
    assert part.read_bytes() == PAYLOAD[:100_000]
    assert not (tmp_path / NAME).exists()
    assert "100000 of 300000 bytes kept" in str(e.value)

    path, _ = fetch(tmp_path, source="modelscope")
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert gets(hub)[-1] == (MS_PREFIX + NAME, "bytes=100000-")


def test_interruption_retried_automatically(hub, tmp_path):
    hub.cut_after = [50_000, 120_000]  # two broken connections, then the rest arrives
    path, msg = fetch(tmp_path, source="huggingface", retries=3)
    assert path.read_bytes() == PAYLOAD
    ranges = [r for p, r in gets(hub) if p.startswith("/storage/")]
    assert ranges == [None, "bytes=50000-", "bytes=170000-"]
    assert msg.count("resuming (retry") == 2


def test_server_ignoring_range_restarts_cleanly(hub, tmp_path):
    hub.honor_range = False
    (tmp_path / (NAME + ".part")).write_bytes(PAYLOAD[:70_000])
    path, msg = fetch(tmp_path, source="modelscope")
    assert path.read_bytes() == PAYLOAD  # not the 70 kB prefix twice
    assert gets(hub) == [(MS_PREFIX + NAME, "bytes=70000-")]
    assert "ignored the Range request" in msg


def test_part_of_another_version_is_not_resumed(hub, tmp_path):
    (tmp_path / (NAME + ".part")).write_bytes(b"x" * 1000)
    state = tmp_path / "cache" / "download" / f"{NAME}.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"partial": {"size": len(PAYLOAD), "sha256": "cd" * 32}}))
    path, msg = fetch(tmp_path, source="modelscope")
    assert path.read_bytes() == PAYLOAD and "different version" in msg
    assert gets(hub) == [(MS_PREFIX + NAME, None)]


def test_bad_checksum_refused(hub, tmp_path, capsys):
    hub.ms_sha = "0" * 64
    rc = main(["data", "download", "rlaif", "--out", str(tmp_path), "--source", "modelscope"])
    err = capsys.readouterr().err
    assert rc != 0
    assert f"expected {'0' * 64}, got {SHA}" in err and "refused" in err
    assert not (tmp_path / NAME).exists() and not (tmp_path / (NAME + ".part")).exists()


def test_bad_checksum_on_first_source_falls_back_to_second(hub, tmp_path):
    hub.ms_sha = "0" * 64
    path, msg = fetch(tmp_path)
    assert path.read_bytes() == PAYLOAD and "failed verification" in msg
    assert json.loads((tmp_path / "cache" / "download" / f"{NAME}.json").read_text())["verified"]["source"] \
        == "huggingface"


def test_bad_checksum_everywhere_fails(hub, tmp_path):
    hub.ms_sha = hub.hf_sha = "1" * 64
    with pytest.raises(dl.VerificationError, match="sha256: expected 1{64}"):
        fetch(tmp_path)
    assert not (tmp_path / NAME).exists() and not (tmp_path / (NAME + ".part")).exists()


def test_fallback_from_404_to_huggingface(hub, tmp_path):
    hub.ms_missing = True
    path, _ = fetch(tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in gets(hub)] == [HF_PREFIX + NAME, f"/storage/{NAME}"]


def test_unreachable_host_gives_clear_message(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:  # a port on 127.0.0.1 with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for var in ("http_proxy", "HTTP_PROXY", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MINIMIND_MODELSCOPE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MINIMIND_HF_URL", f"http://127.0.0.1:{port}/hf")
    rc = main(["data", "download", "rlaif", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc != 0
    ms_url = f"http://127.0.0.1:{port}{MS_PREFIX}{NAME}"
    hf_url = f"http://127.0.0.1:{port}/hf{HF_PREFIX}{NAME}"
    assert ms_url in err and hf_url in err and "connection refused" in err
    assert "HF_ENDPOINT=https://hf-mirror.com" in err and "proxy" in err
    assert f"wget -c -O {tmp_path / NAME} {ms_url}" in err
    assert not any(tmp_path.glob("*.jsonl*"))


def test_present_file_skipped(hub, tmp_path):
    fetch(tmp_path)
    hub.log.clear()
    path, msg = fetch(tmp_path)
    assert path.read_bytes() == PAYLOAD and "not downloaded again" in msg
    assert gets(hub) == []


def test_present_file_verified_offline_from_record(hub, tmp_path, monkeypatch):
    fetch(tmp_path)
    monkeypatch.setenv("MINIMIND_MODELSCOPE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MINIMIND_HF_URL", "http://127.0.0.1:9")
    path, msg = fetch(tmp_path)
    assert "recorded checksum" in msg


def test_bad_existing_file_is_never_overwritten(hub, tmp_path):
    bad = PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1])
    (tmp_path / NAME).write_bytes(bad)
    with pytest.raises(dl.VerificationError, match="it was not modified"):
        fetch(tmp_path)
    (tmp_path / NAME).write_bytes(PAYLOAD[:1000])
    with pytest.raises(dl.VerificationError, match=r"rename it to .*\.part"):
        fetch(tmp_path)
    assert (tmp_path / NAME).read_bytes() == PAYLOAD[:1000]
    assert gets(hub) == []


def test_cli_lists_known_files(tmp_path, capsys):
    (tmp_path / "dpo.jsonl").write_bytes(b"{}\n")
    assert main(["data", "download", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for f in dl.REGISTRY.values():
        assert f.name[:-6] in out
    assert "~1.6 GB" in out and "~53 MB" in out and "present" in out and "MINIMIND_HF_URL" in out
    assert "pretrain_hq -> pretrain_t2t_mini" in out and "lora_identity -> nothing to download" in out


def test_cli_unknown_name(tmp_path, capsys):
    assert main(["data", "download", "pretrain", "--out", str(tmp_path)]) == 2
    assert "unknown data file 'pretrain'" in capsys.readouterr().err


@pytest.mark.parametrize("old, new", [("pretrain_hq", "pretrain_t2t_mini"), ("sft_mini_512", "sft_t2t_mini"),
                                      ("sft_512", "sft_t2t"), ("sft_1024", "sft_t2t"), ("sft_2048", "sft_t2t"),
                                      ("r1_mix_1024", "sft_t2t_mini"), ("lora_identity", None),
                                      ("lora_medical", None)])
def test_retired_names_name_their_replacement(old, new):
    with pytest.raises(dl.RetiredFileError, match=f"{old} was retired by MiniMind in March 2026") as e:
        dl.resolve_name(old + ".jsonl")
    msg = str(e.value)
    assert "\n" not in msg
    if new:
        assert msg.endswith(f"`python -m minimind_core data download {new}`")
    assert ("identity.jsonl" in msg) == (old == "lora_identity")
    assert isinstance(e.value, ValueError) and isinstance(e.value, dl.DownloadError)


def test_cli_retired_names_answer_before_the_network(hub, tmp_path, capsys):
    """Every bad name is reported at once and nothing is fetched, not even the good name's metadata."""
    rc = main(["data", "download", "dpo", "pretrain_hq", "sft_mini_512", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and hub.log == []
    assert "pretrain_hq was retired" in err and "data download pretrain_t2t_mini" in err
    assert "sft_mini_512 was retired" in err and "data download sft_t2t_mini" in err
    assert not any(tmp_path.iterdir())


def test_download_api_refuses_a_retired_name_without_the_network(hub, tmp_path):
    with pytest.raises(dl.RetiredFileError, match="pretrain_t2t_mini"):
        dl.download("pretrain_hq", tmp_path, progress=False, log=lambda m: None)
    assert hub.log == [] and not any(tmp_path.iterdir())

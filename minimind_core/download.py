"""`python -m minimind_core data download NAME...`: fetch MiniMind's JSONL files, resumably and verified.

MiniMind publishes its training data on two hubs with the same file names:

    ModelScope    {MINIMIND_MODELSCOPE_URL}/datasets/gongjy/minimind_dataset/resolve/master/{file}
    Hugging Face  {MINIMIND_HF_URL or HF_ENDPOINT}/datasets/jingyaogong/minimind_dataset/resolve/main/{file}

`--source auto` tries ModelScope first (fast inside mainland China) and Hugging Face second.

`REGISTRY` lists the files the hubs serve since MiniMind-3 (March 2026). The names of the files
they served before (`RETIRED`: pretrain_hq, sft_mini_512, lora_identity, ...) are answered at once,
before any network access, with what replaces them (`RetiredFileError`).

How a file is fetched
1. The expected size and sha256 come from the hub's metadata: ModelScope's repository listing
   (`/api/v1/datasets/{owner}/{name}/repo/tree`, fields `Size` and `Sha256`) or, for Hugging Face,
   a HEAD request on the resolve URL whose redirect carries `X-Linked-Size` and `X-Linked-Etag`
   (the sha256 of a large file). A sha256 pinned in `REGISTRY` wins over the hub's. When a hub
   gives a size but no sha256, the file is checked by size only and a warning says so.
2. Bytes go to `<name>.part` in the output folder. An interrupted transfer keeps the `.part`; the next
   attempt (automatic retries, or running the command again) asks for the rest with an HTTP
   `Range` header. A server that ignores `Range` answers with the whole file, and the `.part` is
   rewritten from byte 0.
3. When the transfer ends, size and sha256 are checked. Only a file that passes is renamed
   (atomically) to its final name. A file that fails is refused: its `.part` is deleted, because
   resuming bytes known to be wrong can never succeed, and the message says what was expected and
   what came. The next source, if any, is then tried.
4. A final file that already exists is never overwritten: if it matches the hub's size and sha256
   it is skipped; if it does not, the command stops and says so.

The expected metadata of an unfinished `.part`, and the sha256 of every verified download, are
kept in `<out>/cache/download/<name>.json`, so that a `.part` belonging to an older version of a
file is not resumed and a finished file can be re-checked while the hubs are unreachable.
"""
from __future__ import annotations

import difflib
import hashlib
import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import DownloadError, RetiredFileError, VerificationError

MODELSCOPE_REPO = "gongjy/minimind_dataset"
MODELSCOPE_REVISION = "master"
HF_REPO = "jingyaogong/minimind_dataset"
HF_REVISION = "main"
DEFAULT_MODELSCOPE_URL = "https://www.modelscope.cn"
DEFAULT_HF_URL = "https://huggingface.co"
SOURCES = ("modelscope", "huggingface")

CHUNK = 1 << 20
USER_AGENT = "minimind-course/0.1 (python-urllib)"

KB, MB, GB = 1000, 1000**2, 1000**3


@dataclass(frozen=True)
class DataFile:
    """One of MiniMind's published data files.

    `approx_size` is for the listing only (MiniMind's README rounds it); `size` and `sha256`, when
    pinned, are exact and checked in addition to (and in preference to) the hub's metadata.
    """

    name: str
    stage: str
    approx_size: int
    description: str
    size: int | None = None
    sha256: str | None = None


REGISTRY: dict[str, DataFile] = {
    f.name: f
    for f in [
        DataFile("pretrain_t2t_mini.jsonl", "pretrain", int(1.2 * GB),
                 "pretraining text (预训练), {\"text\": ...}; the quick path, which the full profile trains on"),
        DataFile("pretrain_t2t.jsonl", "pretrain", 10 * GB,
                 "all of MiniMind's pretraining text, same schema; about 8x the quick path"),
        DataFile("sft_t2t_mini.jsonl", "sft", int(1.6 * GB),
                 "compact SFT set (监督微调), tool-call and thinking samples mixed in; the full profile's SFT data"),
        DataFile("sft_t2t.jsonl", "sft", 14 * GB, "all of MiniMind's SFT conversations, same schema"),
        DataFile("dpo.jsonl", "dpo", 53 * MB, "preference pairs {\"chosen\", \"rejected\"} for DPO"),
        DataFile("rlaif.jsonl", "rlaif", 24 * MB,
                 "open prompts for RL from AI feedback (PPO/GRPO), scored by a reward model in MiniMind; "
                 "no checkable answers, so the course's GRPO stage cannot use them"),
        DataFile("agent_rl.jsonl", "agent_rl", 86 * MB, "multi-turn tool-use tasks for agentic RL"),
        DataFile("agent_rl_math.jsonl", "agent_rl", 18 * MB, "math tasks with verifiable answers (\"gt\"); the full profile's GRPO prompts"),
    ]
}


@dataclass(frozen=True)
class Retired:
    """A file MiniMind published before MiniMind-3 (March 2026) and no longer serves."""

    name: str
    replacement: str | None   # the registry file that does its job now, if any
    why: str


RETIRED: dict[str, Retired] = {
    r.name: r
    for r in [
        Retired("pretrain_hq", "pretrain_t2t_mini", "the quick pretraining path is now pretrain_t2t_mini"),
        Retired("sft_mini_512", "sft_t2t_mini", "the compact SFT set is now sft_t2t_mini"),
        Retired("sft_512", "sft_t2t", "the full SFT set is now sft_t2t"),
        Retired("sft_1024", "sft_t2t", "the full SFT set is now sft_t2t"),
        Retired("sft_2048", "sft_t2t", "the full SFT set is now sft_t2t"),
        Retired("r1_mix_1024", "sft_t2t_mini",
                "thinking now comes as the reasoning_content of sft_t2t_mini's assistant turns"),
        Retired("lora_identity", None,
                "the course ships its own identity set, minimind_core/sample/identity.jsonl, which the full "
                "profile's LoRA stage uses: nothing to download"),
        Retired("lora_medical", None,
                "MiniMind publishes no medical set any more; any file in the SFT schema can train a LoRA adapter"),
    ]
}


# --------------------------------------------------------------------------------------------
# errors


class _NotFound(Exception):
    pass


class _Unreachable(Exception):
    """DNS failure, connection refused, timeout: the host could not be talked to at all."""


class _Interrupted(Exception):
    """The connection broke in the middle of the body."""


# --------------------------------------------------------------------------------------------
# names and URLs


def retired_message(stem: str) -> str | None:
    """What to fetch instead of a retired file, in one line; None when `stem` is not retired."""
    r = RETIRED.get(stem)
    if r is None:
        return None
    if r.replacement is None:
        return f"{r.name} was retired by MiniMind in March 2026 (MiniMind-3): {r.why}"
    return (f"{r.name} was retired by MiniMind in March 2026 (MiniMind-3): {r.why}; fetch it with "
            f"`python -m minimind_core data download {r.replacement}`")


def resolve_name(name: str) -> DataFile:
    """`sft_t2t_mini` or `sft_t2t_mini.jsonl` -> its registry entry.

    A retired name raises RetiredFileError naming its replacement; an unknown one, ValueError
    with the closest known name. Neither touches the network.
    """
    key = name.strip()
    if not key.endswith(".jsonl"):
        key += ".jsonl"
    if key in REGISTRY:
        return REGISTRY[key]
    stem = key[: -len(".jsonl")]
    retired = retired_message(stem)
    if retired:
        raise RetiredFileError(retired)
    stems = [n[: -len(".jsonl")] for n in REGISTRY]
    close = difflib.get_close_matches(stem, stems + list(RETIRED), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f"unknown data file {name!r}{hint}; known: {', '.join(stems)}")


def endpoints() -> dict[str, str]:
    """The base URL of each hub, read from the environment at call time.

    MINIMIND_MODELSCOPE_URL overrides ModelScope; MINIMIND_HF_URL, else HF_ENDPOINT (the variable
    huggingface_hub uses, e.g. https://hf-mirror.com), overrides Hugging Face.
    """
    ms = os.environ.get("MINIMIND_MODELSCOPE_URL") or DEFAULT_MODELSCOPE_URL
    hf = os.environ.get("MINIMIND_HF_URL") or os.environ.get("HF_ENDPOINT") or DEFAULT_HF_URL
    return {"modelscope": ms.rstrip("/"), "huggingface": hf.rstrip("/")}


def file_url(source: str, filename: str) -> str:
    base = endpoints()[source]
    quoted = urllib.parse.quote(filename)
    if source == "modelscope":
        return f"{base}/datasets/{MODELSCOPE_REPO}/resolve/{MODELSCOPE_REVISION}/{quoted}"
    if source == "huggingface":
        return f"{base}/datasets/{HF_REPO}/resolve/{HF_REVISION}/{quoted}"
    raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")


def source_order(source: str = "auto") -> list[str]:
    if source == "auto":
        return list(SOURCES)
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected auto, {', '.join(SOURCES)}")
    return [source]


# --------------------------------------------------------------------------------------------
# HTTP helpers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError carrying the 3xx response and its headers


def _request(url: str, *, method: str = "GET", headers: dict | None = None, follow: bool = True,
             timeout: float = 30.0):
    req = urllib.request.Request(url, method=method)
    req.add_header("User-Agent", USER_AGENT)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    handlers = [] if follow else [_NoRedirect()]
    opener = urllib.request.build_opener(*handlers)
    try:
        return opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if not follow and 300 <= e.code < 400:
            return e  # an HTTPError is also a response: .status, .headers
        if e.code == 404:
            raise _NotFound("HTTP 404 Not Found") from None
        raise DownloadError(f"HTTP {e.code} {e.reason} from {url}") from None
    except urllib.error.URLError as e:
        raise _Unreachable(_describe_network_error(e.reason)) from None
    except (TimeoutError, socket.timeout):
        raise _Unreachable("timed out") from None
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        raise _Unreachable(_describe_network_error(e)) from None


def _describe_network_error(reason) -> str:
    if isinstance(reason, socket.gaierror):
        return f"DNS lookup failed ({reason.strerror or reason})"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)


def _clean_etag(value: str | None) -> str | None:
    """An ETag header -> a lowercase sha256 hex digest, or None when it is not one."""
    if not value:
        return None
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"').lower()
    return v if re.fullmatch(r"[0-9a-f]{64}", v) else None


def _int_header(headers, name: str) -> int | None:
    v = headers.get(name)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


@dataclass
class Remote:
    """What a hub says about one file."""

    source: str
    url: str
    size: int | None
    sha256: str | None
    metadata_note: str = ""


def _head_metadata(source: str, url: str, timeout: float) -> Remote:
    """HEAD the resolve URL, following redirects by hand so that the hub's own headers are seen.

    Hugging Face answers a large file with a redirect to its storage that carries X-Linked-Size and
    X-Linked-Etag (the file's sha256); other servers give at least Content-Length on the final answer.
    """
    current = url
    for _ in range(8):
        try:
            resp = _request(current, method="HEAD", follow=False, timeout=timeout)
        except DownloadError as e:
            if current == url and "HTTP 405" not in str(e):
                raise
            # Storage URLs signed for GET may refuse HEAD: the size then comes from the GET itself.
            return Remote(source, url, None, None, f"none (HEAD on the storage URL: {e})")
        h = resp.headers
        linked_size = _int_header(h, "X-Linked-Size")
        linked_sha = _clean_etag(h.get("X-Linked-Etag"))
        if linked_size is not None or linked_sha is not None:
            resp.close()
            return Remote(source, url, linked_size, linked_sha, "X-Linked-Size/X-Linked-Etag")
        status = getattr(resp, "status", None) or resp.getcode()
        if 300 <= status < 400 and h.get("Location"):
            resp.close()
            current = urllib.parse.urljoin(current, h["Location"])
            continue
        size = _int_header(h, "Content-Length")
        sha = _clean_etag(h.get("ETag"))
        resp.close()
        return Remote(source, url, size, sha, "Content-Length" + ("/ETag" if sha else ""))
    raise DownloadError(f"too many redirects from {url}")


def _modelscope_listing(filename: str, timeout: float) -> tuple[int | None, str | None] | None:
    """Size and sha256 from ModelScope's repository listing, or None when the listing is unusable."""
    base = endpoints()["modelscope"]
    for page in range(1, 21):
        query = urllib.parse.urlencode({"Revision": MODELSCOPE_REVISION, "Root": "/", "PageNumber": page,
                                        "PageSize": 100})
        api = f"{base}/api/v1/datasets/{MODELSCOPE_REPO}/repo/tree?{query}"
        try:
            with _request(api, headers={"Accept": "application/json"}, timeout=timeout) as resp:
                payload = json.loads(resp.read().decode("utf-8"))
        except (_NotFound, DownloadError, ValueError):
            return None
        files = ((payload or {}).get("Data") or {}).get("Files") or []
        for f in files:
            if f.get("Type") == "tree":
                continue
            if f.get("Path") == filename or f.get("Name") == filename:
                size = f.get("Size")
                return (int(size) if isinstance(size, (int, float)) else None,
                        _clean_etag(f.get("Sha256")))
        if len(files) < 100:
            return None
    return None


def remote_metadata(source: str, filename: str, timeout: float = 30.0) -> Remote:
    """Ask one hub for a file's URL, size and sha256. Raises _NotFound or _Unreachable."""
    url = file_url(source, filename)
    if source == "modelscope":
        listed = _modelscope_listing(filename, timeout)
        if listed is not None and (listed[0] is not None or listed[1] is not None):
            head = None
            if listed[0] is None:
                head = _head_metadata(source, url, timeout)
            return Remote(source, url, listed[0] if listed[0] is not None else head.size, listed[1],
                          "repository listing (Size/Sha256)")
    return _head_metadata(source, url, timeout)


# --------------------------------------------------------------------------------------------
# local state


def _state_path(out_dir: Path, name: str) -> Path:
    return out_dir / "cache" / "download" / f"{name}.json"


def _read_state(out_dir: Path, name: str) -> dict:
    p = _state_path(out_dir, name)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_state(out_dir: Path, name: str, state: dict) -> None:
    p = _state_path(out_dir, name)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, p)


def sha256_file(path: Path, progress: bool = False, desc: str = "") -> str:
    h = hashlib.sha256()
    total = path.stat().st_size
    bar = _bar(total, 0, f"checking {desc}", progress and total > 64 * CHUNK)
    with open(path, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                break
            h.update(block)
            bar.update(len(block))
    bar.close()
    return h.hexdigest()


def _bar(total, initial, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not enabled, file=sys.stderr, leave=True)


def _human(n: int | None) -> str:
    if n is None:
        return "unknown size"
    for unit, scale in (("GB", GB), ("MB", MB), ("KB", KB)):
        if n >= scale:
            return f"{n / scale:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} B"


# --------------------------------------------------------------------------------------------
# the transfer


def _expected(entry: DataFile, remote: Remote) -> tuple[int | None, str | None]:
    size = entry.size if entry.size is not None else remote.size
    sha = entry.sha256.lower() if entry.sha256 else remote.sha256
    if entry.sha256 and remote.sha256 and entry.sha256.lower() != remote.sha256:
        raise VerificationError(
            f"{entry.name}: the {remote.source} hub now publishes sha256 {remote.sha256}, but this course "
            f"pins {entry.sha256.lower()}; the file has changed upstream, so it is not downloaded")
    if entry.size is not None and remote.size is not None and entry.size != remote.size:
        raise VerificationError(
            f"{entry.name}: the {remote.source} hub now publishes {remote.size} bytes, but this course "
            f"pins {entry.size}; the file has changed upstream, so it is not downloaded")
    return size, sha


def _transfer(url: str, part: Path, size: int | None, *, timeout: float, progress: bool,
              desc: str, log) -> tuple[int, str, int]:
    """One GET into `part`, resuming from its current length.

    Returns (bytes on disk, their sha256, the file's size). The size is `size` when the metadata gave
    one, else what the response says (Content-Length or the total of Content-Range).

    Raises _Interrupted when the connection breaks mid-body (the .part keeps what arrived).
    """
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        log(f"  {part.name} is longer than the expected {size} bytes; starting again")
        part.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = _request(url, headers=headers, timeout=timeout)
    except DownloadError as e:
        if have and "HTTP 416" in str(e):
            log(f"  the server refused to resume at byte {have}; starting again from byte 0")
            part.unlink()
            have = 0
            resp = _request(url, timeout=timeout)
        else:
            raise
    with resp:
        status = getattr(resp, "status", None) or resp.getcode()
        h = resp.headers
        if status == 206:
            m = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", h.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise DownloadError(f"{url}: the server answered Range bytes={have}- with "
                                    f"Content-Range {h.get('Content-Range')!r}; cannot resume safely")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        else:
            if have:
                log(f"  the server ignored the Range request; downloading {desc} again from byte 0")
            have = 0
            length = _int_header(h, "Content-Length")
            total = length
            mode = "wb"
        if size is not None and total is not None and total != size:
            raise VerificationError(f"{desc}: wrong size: expected {size} bytes, the server sends {total}")
        if size is None and total is None:
            raise DownloadError(f"{url}: neither the hub's metadata nor the response gives the size of "
                                f"{desc}, so a complete download cannot be told from a truncated one")
        expected_end = size if size is not None else total
        hasher = hashlib.sha256()
        if mode == "ab" and have:
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(CHUNK), b""):
                    hasher.update(block)
        bar = _bar(expected_end, have, desc, progress)
        got = have
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (http.client.IncompleteRead, http.client.HTTPException, OSError) as e:
                        raise _Interrupted(f"connection broken after {got} bytes ({type(e).__name__})") from None
                    if not block:
                        break
                    f.write(block)
                    hasher.update(block)
                    got += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
    if got < expected_end:
        raise _Interrupted(f"connection closed after {got} of {expected_end} bytes")
    return got, hasher.hexdigest(), expected_end


def _try_source(entry: DataFile, remote: Remote, out_dir: Path, *, retries: int, retry_wait: float,
                timeout: float, progress: bool, log) -> Path:
    final = out_dir / entry.name
    part = out_dir / (entry.name + ".part")
    size, sha = _expected(entry, remote)
    state = _read_state(out_dir, entry.name)
    if part.exists():
        old = state.get("partial") or {}
        if (old.get("size") not in (None, size)) or (old.get("sha256") and sha and old["sha256"] != sha):
            log(f"  {part.name} belongs to a different version of the file; starting again")
            part.unlink()
    state["partial"] = {"size": size, "sha256": sha, "url": remote.url}
    _write_state(out_dir, entry.name, state)

    attempt = 0
    while True:
        try:
            got, digest, size = _transfer(remote.url, part, size, timeout=timeout, progress=progress,
                                    desc=entry.name, log=log)
            break
        except (_Interrupted, _Unreachable) as e:
            attempt += 1
            if attempt > retries:
                have = part.stat().st_size if part.exists() else 0
                of = f"{size}" if size is not None else "an unknown number of"
                raise _Interrupted(f"{e}; {have} of {of} bytes kept in {part} - run the command "
                                   "again to resume") from None
            log(f"  {e}; resuming (retry {attempt} of {retries})")
            if retry_wait:
                time.sleep(retry_wait * attempt)

    problems = []
    if got != size:
        problems.append(f"size: expected {size} bytes, got {got}")
    if sha is not None and digest != sha:
        problems.append(f"sha256: expected {sha}, got {digest}")
    if problems:
        part.unlink(missing_ok=True)
        state.pop("partial", None)
        _write_state(out_dir, entry.name, state)
        raise VerificationError(f"{entry.name} from {remote.url} failed verification ({'; '.join(problems)}); "
                                f"refused, and the partial file {part.name} was deleted")
    if final.exists():  # appeared while we were downloading: leave it alone
        raise DownloadError(f"{final} appeared during the download; the verified copy is left in {part}")
    os.replace(part, final)
    state.pop("partial", None)
    state["verified"] = {"size": got, "sha256": digest, "source": remote.source, "url": remote.url,
                         "checked_against": "sha256" if sha else "size only"}
    _write_state(out_dir, entry.name, state)
    if sha is None:
        log(f"  warning: {remote.source} published no sha256 for {entry.name}; checked by size only "
            f"(sha256 of what arrived: {digest})")
    return final


def _advice(entry: DataFile, out_dir: Path, attempts: list[tuple[str, str, str]]) -> str:
    lines = [f"could not download {entry.name}; tried:"]
    for source, url, why in attempts:
        lines.append(f"  {source:<12} {url}\n  {'':<12} -> {why}")
    if any(kind_is_network(why) for _, _, why in attempts):
        stem = entry.name[: -len(".jsonl")]
        lines += [
            "What to do:",
            "  - check the network connection and any proxy (https_proxy / HTTPS_PROXY);",
            "  - use a Hugging Face mirror, e.g.:",
            f"      HF_ENDPOINT=https://hf-mirror.com python -m minimind_core data download {stem} --source huggingface",
            "    (MINIMIND_MODELSCOPE_URL and MINIMIND_HF_URL override the two hubs' base URLs);",
            "  - or download it by hand with either command (wget -c resumes) and run this command again to verify it:",
        ]
        for _, url, _ in attempts:
            lines.append(f"      wget -c -O {out_dir / entry.name} {url}")
    return "\n".join(lines)


_NETWORK_WORDS = ("DNS", "refused", "timed out", "unreachable", "connection", "network", "reset")


def kind_is_network(why: str) -> bool:
    return any(w.lower() in why.lower() for w in _NETWORK_WORDS)


def download(name: str, out_dir: str | Path | None = None, source: str = "auto", *, retries: int = 3,
             retry_wait: float = 2.0, timeout: float = 30.0, progress: bool = True, log=None) -> Path:
    """Fetch one of MiniMind's data files into `out_dir` (default data/) and return its path.

    Tries the sources in order (auto: ModelScope, then Hugging Face). Raises DownloadError (or its
    subclass VerificationError) with a message naming the URLs tried and what to do.
    """
    from .paths import DATA_DIR

    log = log or (lambda msg: print(msg, file=sys.stderr))
    entry = resolve_name(name)
    out = Path(out_dir) if out_dir is not None else DATA_DIR
    out.mkdir(parents=True, exist_ok=True)
    final = out / entry.name
    order = source_order(source)

    attempts: list[tuple[str, str, str]] = []
    failures: list[str] = []
    for src in order:
        url = file_url(src, entry.name)
        try:
            remote = remote_metadata(src, entry.name, timeout=timeout)
        except _NotFound as e:
            attempts.append((src, url, str(e)))
            continue
        except _Unreachable as e:
            attempts.append((src, url, str(e)))
            continue
        except DownloadError as e:
            attempts.append((src, url, str(e)))
            continue

        if final.exists():
            return _check_existing(entry, final, remote, progress=progress, log=log)

        log(f"{entry.name}: {_human(remote.size)} from {src} ({url})")
        try:
            return _try_source(entry, remote, out, retries=retries, retry_wait=retry_wait, timeout=timeout,
                               progress=progress, log=log)
        except VerificationError as e:
            log(f"  {e}")
            failures.append(str(e))
            attempts.append((src, url, "failed verification"))
        except _Interrupted as e:
            attempts.append((src, url, f"transfer interrupted: {e}"))
        except (_NotFound, _Unreachable) as e:
            attempts.append((src, url, str(e)))
        except DownloadError as e:
            attempts.append((src, url, str(e)))

    if final.exists():
        state = _read_state(out, entry.name).get("verified") or {}
        pinned = entry.sha256.lower() if entry.sha256 else None
        recorded = pinned or state.get("sha256")
        if recorded:
            digest = sha256_file(final, progress, entry.name)
            if digest == recorded:
                log(f"{entry.name}: present, sha256 matches the "
                    f"{'pinned' if pinned else 'recorded'} checksum (hubs not reachable)")
                return final
            raise VerificationError(f"{final} does not match the {'pinned' if pinned else 'recorded'} "
                                    f"sha256 (expected {recorded}, found {digest}); it was not modified")
        raise DownloadError(f"{final} exists but could not be verified: no hub answered and no checksum "
                            f"is recorded for it.\n" + _advice(entry, out, attempts))
    if failures and len(failures) == len(attempts):
        raise VerificationError("\n".join(failures))
    raise DownloadError(_advice(entry, out, attempts))


def _check_existing(entry: DataFile, final: Path, remote: Remote, *, progress: bool, log) -> Path:
    size, sha = _expected(entry, remote)
    have = final.stat().st_size
    part_hint = (f"move it away or delete it to download a fresh copy (if it is an unfinished download, "
                 f"rename it to {final.name}.part and run again to resume)")
    if size is not None and have != size:
        raise VerificationError(f"{final} already exists with {have} bytes, but {remote.source} publishes "
                                f"{size}; it was not modified - {part_hint}")
    if sha is None:
        log(f"{entry.name}: already present with the expected size ({have} bytes); {remote.source} "
            "publishes no sha256, so it was checked by size only")
        return final
    digest = sha256_file(final, progress, entry.name)
    if digest != sha:
        raise VerificationError(f"{final} already exists but its sha256 is {digest}, while {remote.source} "
                                f"publishes {sha}; it was not modified - {part_hint}")
    state = _read_state(final.parent, entry.name)
    state["verified"] = {"size": have, "sha256": digest, "source": remote.source, "url": remote.url,
                         "checked_against": "sha256"}
    _write_state(final.parent, entry.name, state)
    log(f"{entry.name}: already present, sha256 verified; not downloaded again")
    return final


# --------------------------------------------------------------------------------------------
# the listing that `data download` prints without names


def list_files(out_dir: Path) -> str:
    rows = []
    for f in REGISTRY.values():
        path = out_dir / f.name
        if path.exists():
            here = f"present ({_human(path.stat().st_size)})"
        elif (out_dir / (f.name + ".part")).exists():
            here = f"partial ({_human((out_dir / (f.name + '.part')).stat().st_size)})"
        else:
            here = ""
        rows.append((f.name[: -len(".jsonl")], f.stage, "~" + _human(f.approx_size), here, f.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("name", "stage", "size", "in " + str(out_dir))
    widths = [max(w, len(h)) for w, h in zip(widths, head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    lines = [fmt.format(*head, "contents"), fmt.format(*("-" * w for w in widths), "-" * 8)]
    lines += [fmt.format(*r) for r in rows]
    ep = endpoints()
    lines += [
        "",
        "Sizes are approximate. Sources, tried in this order with --source auto:",
        f"  modelscope   {ep['modelscope']}/datasets/{MODELSCOPE_REPO}  (MINIMIND_MODELSCOPE_URL)",
        f"  huggingface  {ep['huggingface']}/datasets/{HF_REPO}  (MINIMIND_HF_URL or HF_ENDPOINT)",
        "Retired in March 2026 (MiniMind-3), with what replaces them:",
        "  " + ", ".join(f"{r.name} -> {r.replacement or 'nothing to download'}" for r in RETIRED.values()),
        "Example: python -m minimind_core data download pretrain_t2t_mini sft_t2t_mini dpo",
    ]
    return "\n".join(lines)


__all__ = ["DataFile", "REGISTRY", "RETIRED", "Retired", "RetiredFileError", "DownloadError",
           "VerificationError", "retired_message", "resolve_name", "endpoints",
           "file_url", "source_order", "remote_metadata", "download", "sha256_file", "list_files"]

"""A full-scale rehearsal of the `full` profile on a CPU, before paying for a GPU.

MiniMind's quick pretraining file, pretrain_t2t_mini.jsonl, is 1.2 GB of {"text": ...} lines:
mostly Chinese documents, some English, from a few hundred to about 1,500 characters. This script
writes a synthetic file of that shape (made-up characters and words with a Zipf-like frequency, so
the tokenizer has something to merge; default 300 MB) and runs every step of the `full` profile
that does not need the real text or a GPU:

1. trains the 6,400-token tokenizer on the file's first documents (the course trains on the first
   200,000 of the real file) and reports its throughput;
2. builds the token cache of the file at three sizes, each in its own process whose resident
   memory is sampled while it runs: the cache streams, so the peak must not grow with the file
   (the curve is printed);
3. runs a few optimizer steps of the real 25.83M-parameter MiniMind2-Small on the CPU with the
   full recipe's sequence length (smaller batches), in its own process;
4. projects the time of one epoch of the real file on a GPU from the model's FLOPs per token.

    python benchmarks/rehearsal.py                  # 300 MB: 2.3 min on 2 idle cores, 7.5 on busy ones
    python benchmarks/rehearsal.py --size-mb 50     # a quick look
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MB = 1e6
REAL_FILE_BYTES = 1.2e9          # pretrain_t2t_mini.jsonl, as MiniMind lists it
N_PARAMS = 25_829_888            # MiniMind2-Small, the tied embedding counted once
# dense bf16 tensor-core peaks with fp32 accumulation (the same table as benchmarks/gpu_check.sh)
GPUS = {"RTX 3090": 71e12, "RTX 4090": 165e12, "H100 SXM": 989e12}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=float, default=300, help="size of the synthetic file (default 300)")
    p.add_argument("--curve", default="0.1,0.3,1", help="fractions of the file whose cache build is measured")
    p.add_argument("--tokenizer-docs", type=int, default=10_000, help="documents the tokenizer trains on")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps of the real model")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the steps (default: all cores)")
    p.add_argument("--mfu", type=float, default=None, help="assumed MFU for every GPU (default: 0.3, H100 0.2)")
    p.add_argument("--workdir", default=None, help="where the files go (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", nargs=2, metavar=("TASK", "JSON"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------
# 0. the synthetic file


class _Draws:
    """Characters or words drawn with Zipf-like weights ((rank + 10)^-1.1, as real frequencies
    fall), a million at a time: one by one, writing the file would take longer than reading it."""

    def __init__(self, rng, table):
        import numpy as np

        self.rng, self.table = rng, table
        w = 1.0 / np.arange(11, len(table) + 11) ** 1.1
        self.p = w / w.sum()
        self.buf, self.pos = [], 0

    def take(self, n: int) -> list:
        if self.pos + n > len(self.buf):
            self.buf = self.table[self.rng.choice(len(self.table), 1_000_000, p=self.p)].tolist()
            self.pos = 0
        self.pos += n
        return self.buf[self.pos - n:self.pos]


def _vocabularies(rng, r):
    """Chinese: 20,000 "words" of one to three characters from 3,500 characters of the CJK block
    (real Chinese text repeats words, which is what lets BPE reach ~1.5 characters per token);
    English: 6,000 made-up words from syllables."""
    import numpy as np

    chars = [chr(c) for c in rng.choice(np.arange(0x4E00, 0x9FA6), 3500, replace=False)]
    cum = list(itertools.accumulate(1.0 / (i + 10) ** 1.1 for i in range(len(chars))))
    zh = sorted({"".join(r.choices(chars, cum_weights=cum, k=r.choice((1, 2, 2, 2, 3))))
                 for _ in range(24_000)})[:20_000]
    syll = [a + b for a in "bcdfghjklmnprstvwz" for b in ("a", "e", "i", "o", "u", "ai", "ou", "ea")]
    en = sorted({"".join(r.choices(syll, k=r.randint(1, 3))) for _ in range(8000)})[:6000]
    r.shuffle(zh)
    r.shuffle(en)
    return {"zh": _Draws(rng, np.array(zh)), "en": _Draws(rng, np.array(en))}


def _document(r, draws, n_chars: int, lang: str) -> str:
    """About n_chars characters: Chinese sentences of 3-14 words ending in ，or 。 (a mixed
    document adds English words to some), or capitalised English sentences of 5-19 words.
    `r` is a random.Random: its scalars are 20x cheaper than numpy's."""
    out, size = [], 0
    if lang == "en":
        words, i = draws["en"].take(n_chars // 5), 0
        while i < len(words):
            k = r.randint(5, 19)
            s = " ".join(words[i:i + k])
            out.append(s[0].upper() + s[1:] + (". " if r.random() < 0.85 else ", "))
            i += k
        return "".join(out)[:n_chars]
    words, i = draws["zh"].take(n_chars // 2 + 1), 0
    while i < len(words):
        k = r.randint(3, 14)
        out.append("".join(words[i:i + k]))
        if lang == "mixed" and r.random() < 0.5:
            out.append(" " + " ".join(draws["en"].take(r.randint(1, 3))) + " ")
        out.append("，" if r.random() < 0.6 else "。")
        i += k
    return "".join(out)[:n_chars]


def make_corpus(path: Path, size_mb: float, seed: int) -> dict:
    """Write documents (75% Chinese, 20% English, 5% mixed; lengths log-normal around 550
    characters, cut to 200-1,500) until the file holds size_mb megabytes."""
    import random

    import numpy as np

    rng, r = np.random.default_rng(seed), random.Random(seed)
    draws = _vocabularies(rng, r)
    t0, n_docs, n_bytes, chars = time.time(), 0, 0, []
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        while n_bytes < size_mb * MB:
            n = min(1500, max(200, int(r.lognormvariate(math.log(550), 0.55))))
            u = r.random()
            lang = "zh" if u < 0.75 else "en" if u < 0.95 else "mixed"
            line = json.dumps({"text": _document(r, draws, n, lang)}, ensure_ascii=False) + "\n"
            f.write(line)
            n_bytes += len(line.encode("utf-8"))
            n_docs += 1
            chars.append(n)
    q = np.percentile(chars, [10, 50, 90])
    return {"docs": n_docs, "bytes": n_bytes, "seconds": time.time() - t0,
            "chars_p10_p50_p90": [int(x) for x in q]}


def prefix_file(src: Path, dst: Path, n_bytes: float) -> int:
    """The first whole lines of `src` up to n_bytes, written to `dst`; returns the bytes written."""
    written = 0
    with open(src, "rb") as f, open(dst, "wb") as g:
        for line in f:
            if written + len(line) > n_bytes:
                break
            g.write(line)
            written += len(line)
    return written


# --------------------------------------------------------------------------------------------
# 1. the tokenizer


def train_tokenizer_on(src: Path, n_docs: int, out: Path) -> dict:
    """Train the full profile's 6,400-token tokenizer on the first n_docs documents of `src`."""
    from minimind_core.tokenizer import train_tokenizer

    texts, n_bytes = [], 0
    with open(src, encoding="utf-8") as f:
        for _, line in zip(range(n_docs), f):
            texts.append(json.loads(line)["text"])
            n_bytes += len(line.encode("utf-8"))
    t0 = time.time()
    train_tokenizer(texts, 6400, out)
    return {"docs": len(texts), "bytes": n_bytes, "seconds": time.time() - t0}


# --------------------------------------------------------------------------------------------
# 2. and 3. measured in child processes, so that each peak is the task's own


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_child(task: str, args: dict, interval: float = 0.05) -> dict:
    """Run `task` in a fresh Python process, sampling its resident memory every `interval` s.

    Returns the child's own JSON result plus `peak_rss_mb` (the largest sample) and `samples`.
    """
    cmd = [sys.executable, __file__, "--child", task, json.dumps(args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    samples = []

    def sample():
        while proc.poll() is None:
            rss = _rss_mb(proc.pid)
            if rss is not None:
                samples.append(rss)
            time.sleep(interval)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    out, _ = proc.communicate()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"the {task} step failed (exit code {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = max(samples) if samples else float("nan")
    result["samples"] = len(samples)
    return result


def child_cache(args: dict) -> dict:
    """Build the token cache of args["src"] (one process, the library's default)."""
    from minimind_core.datasets import build_token_cache
    from minimind_core.tokenizer import load_tokenizer

    tok = load_tokenizer(args["tokenizer"])
    base = _rss_mb(os.getpid())
    t0 = time.time()
    cache = build_token_cache(args["src"], tok, cache_dir=args["cache_dir"], progress=False, rebuild=True)
    return {"seconds": time.time() - t0, "tokens": cache.n_tokens, "docs": cache.n_docs,
            "rss_before_mb": base, "cache_bytes": Path(cache.path).stat().st_size}


def child_steps(args: dict) -> dict:
    """A few `--profile full` pretraining steps of MiniMind2-Small, on the CPU."""
    import torch

    from minimind_core import MiniMindForCausalLM, count_parameters
    from minimind_core.profiles import get_profile
    from minimind_core.train import train

    rows = []
    result = train("pretrain", profile="full", data=args["src"], tokenizer=args["tokenizer"], out=args["out"],
                   cache_dir=args["cache_dir"], batch_size=args["batch_size"], accum=args["accum"],
                   max_steps=args["steps"], log_every=1, save_every=0, progress=False, device="cpu",
                   threads=args["threads"], callbacks=[rows.append],
                   val_fraction=0.0)  # no held-out loss: only the steps' own time is measured
    elapsed = [0.0] + [r["elapsed_s"] for r in rows]
    cfg = result.config
    return {"step_seconds": [b - a for a, b in zip(elapsed, elapsed[1:])], "losses": [r["loss"] for r in rows],
            "tokens_per_step": cfg.batch_size * cfg.accum * cfg.seq_len, "seq_len": cfg.seq_len,
            "params": count_parameters(MiniMindForCausalLM(get_profile("full").model_config())),
            "threads": torch.get_num_threads()}


# --------------------------------------------------------------------------------------------
# 4. the projection


def flops_per_token(n_params: int, n_layers: int, hidden: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the weights (forward 2N, backward 4N) plus 12·L·d·T for the
    attention scores and their weighted sum (PaLM's count, without halving for the causal mask)."""
    return 6 * n_params + 12 * n_layers * hidden * seq_len


def projection(tokens: float, fpt: float, mfu: float | None) -> list[tuple]:
    """(gpu, peak, mfu, tokens/s, hours for `tokens`) for each GPU of GPUS."""
    rows = []
    for gpu, peak in GPUS.items():
        m = mfu if mfu is not None else (0.2 if gpu.startswith("H100") else 0.3)
        tps = peak * m / fpt
        rows.append((gpu, peak, m, tps, tokens / tps / 3600))
    return rows


# --------------------------------------------------------------------------------------------
# the whole rehearsal


def rehearse(args, work: Path) -> dict:
    from minimind_core.profiles import get_profile

    full = get_profile("full")
    cfg, seq_len = full.model_config(), full.stage("pretrain").seq_len
    src = work / "pretrain_synthetic.jsonl"
    print(f"0. writing a {args.size_mb:g} MB file shaped like pretrain_t2t_mini ...", flush=True)
    corpus = make_corpus(src, args.size_mb, args.seed)
    p10, p50, p90 = corpus["chars_p10_p50_p90"]
    print(f"   {corpus['docs']:,} documents, {corpus['bytes'] / MB:.0f} MB in {corpus['seconds']:.0f} s; "
          f"characters per document p10/p50/p90 {p10}/{p50}/{p90}")

    print(f"1. tokenizer: 6,400 tokens on the first {args.tokenizer_docs:,} documents ...", flush=True)
    tok = train_tokenizer_on(src, args.tokenizer_docs, work / "tokenizer_6400")
    tok_mbs = tok["bytes"] / MB / tok["seconds"]
    print(f"   {tok['bytes'] / MB:.1f} MB in {tok['seconds']:.1f} s: {tok_mbs:.2f} MB/s; the course's 200,000 "
          f"documents of the real file (~{200_000 * corpus['bytes'] / corpus['docs'] / MB:.0f} MB) would take "
          f"~{200_000 * corpus['bytes'] / corpus['docs'] / MB / tok_mbs / 60:.1f} min here")

    print("2. token cache, one process each, resident memory sampled every 50 ms:", flush=True)
    curve = []
    for frac in sorted(float(x) for x in args.curve.split(",")):
        part = src if frac >= 1 else work / f"part_{frac:g}.jsonl"
        n_bytes = corpus["bytes"] if frac >= 1 else prefix_file(src, part, frac * corpus["bytes"])
        r = run_child("cache", {"src": str(part), "tokenizer": str(work / "tokenizer_6400"),
                                "cache_dir": str(work / "cache")})
        r.update(bytes=n_bytes, mbs=n_bytes / MB / r["seconds"])
        curve.append(r)
        print(f"   {n_bytes / MB:7.0f} MB  {r['docs']:>8,} docs  {r['tokens'] / 1e6:7.1f}M tokens  "
              f"{r['seconds']:6.1f} s  {r['mbs']:5.2f} MB/s  peak RSS {r['peak_rss_mb']:6.0f} MB "
              f"(after imports {r['rss_before_mb']:.0f} MB; {r['samples']} samples)", flush=True)

    print(f"3. {args.steps} optimizer steps of MiniMind2-Small on the CPU (--profile full, seq_len {seq_len}, "
          f"batch {args.batch_size} x accum {args.accum}) ...", flush=True)
    steps = run_child("steps", {"src": str(src), "tokenizer": str(work / "tokenizer_6400"),
                                "cache_dir": str(work / "cache"), "out": str(work / "run"), "steps": args.steps,
                                "batch_size": args.batch_size, "accum": args.accum,
                                "threads": args.threads or os.cpu_count() or 1})
    later = steps["step_seconds"][1:] or steps["step_seconds"]
    cpu_tps = steps["tokens_per_step"] / (sum(later) / len(later))
    print(f"   {steps['params']:,} parameters, {steps['threads']} threads; loss "
          + " -> ".join(f"{x:.3f}" for x in steps["losses"])
          + f" (ln 6400 = {math.log(6400):.3f}); {sum(later) / len(later):.1f} s per step after the first, "
          f"{cpu_tps:,.0f} tokens/s; peak RSS {steps['peak_rss_mb']:.0f} MB")
    return {"corpus": corpus, "tok": tok, "curve": curve, "steps": steps, "cpu_tps": cpu_tps,
            "cfg": cfg, "seq_len": seq_len}


def report(res: dict, mfu: float | None) -> None:
    cfg, seq_len, curve = res["cfg"], res["seq_len"], res["curve"]
    biggest = curve[-1]
    synth_bpt = biggest["bytes"] / biggest["tokens"]
    real_tokens = REAL_FILE_BYTES / 4.7
    fpt = flops_per_token(res["steps"]["params"], cfg.num_hidden_layers, cfg.hidden_size, seq_len)
    growth = round(curve[-1]["peak_rss_mb"] - curve[0]["peak_rss_mb"])
    print("\n4. what this says about the real run")
    print(f"   cache memory: peak RSS {curve[0]['peak_rss_mb']:.0f} MB at {curve[0]['bytes'] / MB:.0f} MB of text and "
          f"{curve[-1]['peak_rss_mb']:.0f} MB at {curve[-1]['bytes'] / MB:.0f} MB ({growth:+d} MB for "
          f"{(curve[-1]['bytes'] - curve[0]['bytes']) / MB:.0f} MB more text): it streams")
    print(f"   cache build: {biggest['mbs']:.2f} MB/s here, so the 1.2 GB file takes ~{REAL_FILE_BYTES / MB / biggest['mbs'] / 60:.0f} "
          f"min once (then it is reused); its token file ~{real_tokens * 2 / 1e9:.2f} GB (uint16)")
    print(f"   tokens per epoch of pretrain_t2t_mini: ~{real_tokens / 1e6:.0f}M, assuming 4.7 bytes per token "
          f"(MiniMind's 1.5-1.7 Chinese characters per token, 3 bytes each; 4-5 English characters); "
          f"the synthetic text gives {synth_bpt:.2f} bytes per token")
    print(f"   FLOPs per token: 6 x {res['steps']['params']:,} + 12 x {cfg.num_hidden_layers} x {cfg.hidden_size} x "
          f"{seq_len} = {fpt / 1e6:.1f}M; this CPU ({res['cpu_tps']:,.0f} tokens/s) would need "
          f"{real_tokens / res['cpu_tps'] / 86400:.0f} days for one epoch")
    print("   one epoch on a GPU, bf16, at an assumed MFU (measure yours: bash benchmarks/gpu_check.sh):")
    for gpu, peak, m, tps, hours in projection(real_tokens, fpt, mfu):
        print(f"     {gpu:<9} peak {peak / 1e12:5.0f} TFLOP/s x MFU {m:.0%} = {tps / 1e3:7.0f}k tokens/s -> "
              f"{hours * 60:5.0f} min")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        task, payload = args.child
        result = {"cache": child_cache, "steps": child_steps}[task](json.loads(payload))
        print(json.dumps(result))
        return 0
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="minimind-rehearsal-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"rehearsal in {work}: {os.cpu_count()} CPU cores, TOKENIZERS_PARALLELISM="
          f"{os.environ.get('TOKENIZERS_PARALLELISM', '(unset)')}", flush=True)
    t0 = time.time()
    try:
        res = rehearse(args, work)
        report(res, args.mfu)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nrehearsal done in {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput: MiniMind-style padded batches vs packed batches, eager vs compiled, fp32 vs bf16.

Counts only real training targets (labels that are not -100, i.e. not padding), so a padded batch
gets no credit for the padding it pushes through the model. Every variant runs the same
optimizer step (forward, backward, clip, AdamW) on the same model; each is printed with its
ratio to padded + eager + fp32 measured in the same run.

    python benchmarks/train_throughput.py                       # tiny model, CPU: a couple of minutes
    python benchmarks/train_throughput.py --profile full --steps 50   # on a GPU: MiniMind2-Small
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default=None, help="smoke | tiny | full (model size; default: MINIMIND_PROFILE)")
    p.add_argument("--data", default=None, help="pretraining JSONL (default: the bundled sample corpus)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seq-len", type=int, default=None, help="default: the profile's pretraining seq_len")
    p.add_argument("--steps", type=int, default=8, help="timed optimizer steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--bf16", choices=["auto", "yes", "no"], default="auto",
                   help="bf16 variants: auto = on a GPU that supports bf16")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    return p.parse_args(argv)


def main(argv=None):
    from minimind_core import MiniMindForCausalLM
    from minimind_core.datasets import PackedDataset, PaddedPretrainDataset, build_token_cache
    from minimind_core.profiles import SAMPLE_DIR, get_profile
    from minimind_core.tokenizer import load_tokenizer
    from minimind_core.losses import token_ce_sum

    args = parse_args(argv)
    prof = get_profile(args.profile)
    recipe = prof.stage("pretrain")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        torch.set_num_threads(args.threads or min(2, os.cpu_count() or 1))
    data = args.data or (recipe.data if recipe.data.exists() else SAMPLE_DIR / "pretrain.jsonl")
    tok = load_tokenizer(args.tokenizer or (prof.tokenizer if prof.tokenizer.exists() else SAMPLE_DIR / "tokenizer"))
    seq_len = args.seq_len or recipe.seq_len
    bs = args.batch_size or recipe.batch_size
    vocab = max(prof.model.get("vocab_size", 6400), len(tok))

    packed = PackedDataset(build_token_cache(data, tok, progress=False), seq_len)
    padded = PaddedPretrainDataset(data, tok, seq_len)
    bf16 = {"yes": True, "no": False}.get(args.bf16, device.type == "cuda" and torch.cuda.is_bf16_supported())
    dtypes = ["fp32"] + (["bf16"] if bf16 else [])
    modes = ["eager"] + ([] if args.no_compile else ["compiled"])

    def batches(ds):
        g = torch.Generator().manual_seed(0)
        order = torch.randperm(len(ds), generator=g).tolist()
        for i in itertools.count():
            idx = [order[(i * bs + j) % len(order)] for j in range(bs)]
            items = [ds[k] for k in idx]
            yield {k: torch.stack([it[k] for it in items]).to(device) for k in ("input_ids", "labels")}

    results = []
    n_params = sum(p.numel() for p in MiniMindForCausalLM(prof.model_config(vocab_size=vocab)).parameters())
    print(f"model: {prof.name} profile, {n_params / 1e6:.2f}M parameters, device {device}, "
          f"batch {bs} x seq {seq_len}, {args.steps} timed steps after {args.warmup} warm-up steps")
    fill = padded_fill(padded, seq_len)
    print(f"padded batches: {fill:.1%} of positions are real targets; packed: 100%")
    for layout, ds in (("padded", padded), ("packed", packed)):
        for mode in modes:
            for dt in dtypes:
                torch.manual_seed(0)
                model = MiniMindForCausalLM(prof.model_config(vocab_size=vocab)).to(device)
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
                fwd = torch.compile(model) if mode == "compiled" else model
                ac = (torch.autocast(device.type, dtype=torch.bfloat16) if dt == "bf16"
                      else contextlib.nullcontext())
                it = batches(ds)
                tokens, t0 = 0, None
                try:
                    for step in range(args.warmup + args.steps):
                        if step == args.warmup:
                            _sync(device)
                            t0 = time.perf_counter()
                        b = next(it)
                        with ac:
                            logits = fwd(input_ids=b["input_ids"]).logits
                        n = (b["labels"][:, 1:] != -100).sum()
                        loss = token_ce_sum(logits, b["labels"]) / n.clamp(min=1)
                        loss.backward()
                        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                        if step >= args.warmup:
                            tokens += int(n)
                    _sync(device)
                    tps = tokens / (time.perf_counter() - t0)
                except Exception as e:  # noqa: BLE001 - e.g. no C++ compiler for torch.compile
                    print(f"{layout:7s} {mode:9s} {dt:5s}  failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                    continue
                results.append((layout, mode, dt, tps))
                print(f"{layout:7s} {mode:9s} {dt:5s}  {tps:12,.0f} target tokens/s", flush=True)
    base = next((r[3] for r in results if r[:3] == ("padded", "eager", "fp32")), None)
    if base:
        print("\nratio to padded + eager + fp32 (same run):")
        for layout, mode, dt, tps in results:
            print(f"  {layout:7s} {mode:9s} {dt:5s}  {tps / base:6.2f}x")
    return 0


def padded_fill(ds, seq_len: int, n: int = 256) -> float:
    real = sum(int((ds[i]["labels"][1:] != -100).sum()) for i in range(min(n, len(ds))))
    return real / (min(n, len(ds)) * (seq_len - 1))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    sys.exit(main())

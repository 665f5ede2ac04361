"""Decoding speed: the course's generator against transformers' `generate` and llama.cpp, same weights.

Greedy decoding of a fixed number of tokens (no early stop) after a fixed-length prompt, at batch 1
and batch 16. The engines take turns within each round (course, HF, llama.cpp, course, ...), so a
machine that gets busier or quieter during the run slows all of them alike; each engine's median
over the rounds is printed with its ratio to HF `generate`.

    course generate    minimind_core.generate.generate on MiniMindForCausalLM (static KV cache)
    HF generate        transformers' LlamaForCausalLM.generate on the same weights (export.to_llama)
    llama.cpp          llama-batched-bench on an f32 GGUF of the same weights (export_gguf), when the
                       binary is on PATH or under --llama-cpp DIR

    python benchmarks/generate_speed.py                         # tiny-profile shapes, random weights
    python benchmarks/generate_speed.py --model runs/tiny/sft --threads 1
    python benchmarks/generate_speed.py --profile full --device cuda --no-llama-cpp
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import minimind_core  # noqa: E402,F401 - before torch: waiting OpenMP threads sleep (README, "Threads")
import torch  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model or run folder (default: random weights of --profile's shape)")
    p.add_argument("--profile", default="tiny", help="model shape when --model is not given (default tiny)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16], help="batch sizes (default 1 16)")
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for every engine (default: torch's)")
    p.add_argument("--device", default="cpu", help="device of the PyTorch engines (llama.cpp runs on the CPU)")
    p.add_argument("--llama-cpp", default=None, help="folder holding llama-batched-bench (else PATH)")
    p.add_argument("--no-llama-cpp", action="store_true")
    return p.parse_args(argv)


def load_weights(args):
    """(MiniMindForCausalLM, tokenizer, description) on the CPU, in float32."""
    from minimind_core import MiniMindConfig, MiniMindForCausalLM, count_parameters
    from minimind_core.checkpoint import load_model_and_tokenizer
    from minimind_core.profiles import get_profile
    from minimind_core.tokenizer import load_tokenizer

    if args.model:
        model, tok = load_model_and_tokenizer(args.model, device="cpu", dtype=torch.float32)
        what = f"{args.model}"
    else:
        profile = get_profile(args.profile)
        torch.manual_seed(0)
        model = MiniMindForCausalLM(MiniMindConfig(**profile.model)).eval()
        tok = load_tokenizer(profile.tokenizer)
        what = f"{profile.name}-profile shapes, random weights"
    return model.eval(), tok, f"{what} ({count_parameters(model) / 1e6:.2f}M parameters, fp32)"


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def python_engines(model, args, device):
    """{name: run(batch) -> seconds} for the two PyTorch engines."""
    from minimind_core.export import to_llama
    from minimind_core.generate import generate

    ours = model.to(device)
    llama = to_llama(model).to(device).eval()
    llama.generation_config.eos_token_id = None       # decode exactly --new-tokens tokens, like the others
    llama.generation_config.pad_token_id = 0
    n = args.new_tokens
    prompts = {b: torch.randint(3, model.config.vocab_size, (b, args.prompt_tokens),
                                generator=torch.Generator().manual_seed(b)).to(device) for b in args.batch}
    for b, ids in prompts.items():   # warm-up, and the check that both decode the same tokens
        a = generate(ours, ids, n, do_sample=False, eos_token_id=None)
        h = llama.generate(ids, max_new_tokens=n, do_sample=False)[:, ids.shape[1]:]
        same = (a == h).all(dim=1).float().mean().item()
        print(f"batch {b}: greedy tokens identical in {same:.0%} of the sequences (course vs HF)")
    return {
        "course generate": lambda b: timed(lambda: generate(ours, prompts[b], n, do_sample=False, eos_token_id=None),
                                           device),
        "HF generate": lambda b: timed(lambda: llama.generate(prompts[b], max_new_tokens=n, do_sample=False), device),
    }


def find_llama_cpp(args) -> str | None:
    if args.no_llama_cpp:
        return None
    name = "llama-batched-bench"
    if args.llama_cpp:
        for cand in (Path(args.llama_cpp) / name, Path(args.llama_cpp) / "bin" / name):
            if cand.is_file():
                return str(cand)
        raise SystemExit(f"--llama-cpp {args.llama_cpp}: no {name} there (nor in its bin/)")
    return shutil.which(name)


def llama_cpp_engine(binary: str, model, tok, args, workdir: Path):
    """run(batch) -> seconds of text generation, from llama-batched-bench's own timing."""
    from minimind_core.export_gguf import write_gguf

    gguf = write_gguf(model, tok, workdir / "model-f32.gguf", dtype="f32")
    ctx = max(args.batch) * (args.prompt_tokens + args.new_tokens)
    ctx = 256 * -(-ctx // 256)
    threads = str(args.threads or torch.get_num_threads())

    def run(b: int) -> float:
        cmd = [binary, "-m", str(gguf), "-c", str(ctx), "-npp", str(args.prompt_tokens), "-ntg", str(args.new_tokens),
               "-npl", str(b), "-np", str(max(b, 1)), "-kvu", "-t", threads, "-tb", threads, "--output-format", "jsonl"]
        for _ in range(3):   # this build of llama-batched-bench now and then exits silently: try again
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
            if rows:
                return float(rows[-1]["t_tg"])
        raise SystemExit(f"llama-batched-bench gave no result ({out.returncode}): {out.stderr[-500:]}\n{' '.join(cmd)}")

    return run


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, tok, what = load_weights(args)
    binary = find_llama_cpp(args)
    with tempfile.TemporaryDirectory() as tmp:
        engines = {}
        if binary:
            engines["llama.cpp (f32)"] = llama_cpp_engine(binary, model, tok, args, Path(tmp))
        engines = {**python_engines(model, args, device), **engines}
        print(f"{what}; prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, greedy, "
              f"{args.threads or torch.get_num_threads()} thread(s), device {device}, {args.rounds} rounds interleaved"
              + ("" if binary else "; llama.cpp: no llama-batched-bench found"))
        seconds: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for b in args.batch:
                for name, run in engines.items():
                    seconds.setdefault((name, b), []).append(run(b))
    print(f"{'batch':>5}  {'engine':<18} {'tokens/s':>10}  {'vs HF generate':>14}")
    for b in args.batch:
        rate = {name: b * args.new_tokens / statistics.median(seconds[(name, b)]) for name in engines}
        for name in engines:
            print(f"{b:>5}  {name:<18} {rate[name]:>10,.0f}  {rate[name] / rate['HF generate']:>13.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

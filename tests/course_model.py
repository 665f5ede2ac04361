"""A small course checkpoint for the export and serving tests, written with the library's writer.

The weights are random and perturbed everywhere (norm weights too) strongly enough that a greedy reply walks through
many different tokens and a wrong transposition or permutation anywhere shows up in its tokens.
The tokenizer is the sample corpus' 2048-token BPE, the one every course model uses on a CPU.
"""
from __future__ import annotations

from pathlib import Path

import torch

PROMPTS = ["你好，请介绍一下你自己。", "What is the capital of France?", "1+1=?", "Tell me a story about a cat.",
           "中国的首都是哪里？", "  spaces, tabs\tand\nnew lines  "]


def write_course_model(run_dir: Path, seed: int = 0, **config) -> Path:
    """A run folder with one checkpoint (model + tokenizer); returns the run folder."""
    from minimind_core import MiniMindConfig, MiniMindForCausalLM
    from minimind_core.checkpoint import save_checkpoint
    from minimind_core.profiles import get_profile
    from minimind_core.tokenizer import load_tokenizer

    kw = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              vocab_size=2048, max_position_embeddings=256)
    kw.update(config)
    torch.manual_seed(seed)
    model = MiniMindForCausalLM(MiniMindConfig(**kw)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    tokenizer = load_tokenizer(get_profile("smoke").tokenizer)
    save_checkpoint(run_dir, 1, model=model, tokenizer=tokenizer, info={"stage": "sft"})
    return Path(run_dir)

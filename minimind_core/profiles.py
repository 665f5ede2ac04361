"""One switch for the size of everything: the `smoke`, `tiny` and `full` profiles.

`MINIMIND_PROFILE` = smoke | tiny | full picks the model size, the data files, the tokenizer and
every training stage's recipe. Unset, it is `full` where CUDA is available and `tiny` elsewhere.

    smoke  tests and CI: a width-64 model on a slice of the sample corpus, seconds per stage
    tiny   CPU learners: a ~1M-parameter model that learns the sample corpus in minutes
    full   GPU learners: MiniMind2-Small (25.83M) with MiniMind's recipe on MiniMind's data
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .paths import DATA_DIR, PROJECT_DIR, RUNS_DIR, SAMPLE_DIR

PROFILE_NAMES = ("smoke", "tiny", "full")
STAGES = ("pretrain", "sft", "lora", "dpo", "distill")


@dataclass(frozen=True)
class StageRecipe:
    """Defaults of one training stage. `max_steps` (optimizer steps) wins over `epochs` when set."""

    data: Path
    epochs: int
    batch_size: int
    accum: int
    lr: float
    seq_len: int
    max_steps: int | None = None
    warmup: int = 0
    log_every: int = 10
    save_every: int = 0
    init: str | None = None          # the stage whose checkpoint this stage starts from
    extra: dict = field(default_factory=dict)  # stage-specific knobs (LoRA rank, DPO beta, ...)


@dataclass(frozen=True)
class Profile:
    name: str
    model: dict
    tokenizer: Path
    stages: dict
    eval_qa: Path | None
    description: str = ""

    def model_config(self, **overrides):
        from .config import MiniMindConfig

        return MiniMindConfig(**{**self.model, **overrides})

    def stage(self, name: str) -> StageRecipe:
        if name not in self.stages:
            raise ValueError(f"unknown stage {name!r}; expected one of {', '.join(STAGES)}")
        return self.stages[name]

    def run_dir(self, stage: str) -> Path:
        """Where a stage's run folder lives by default: runs/<profile>/<stage>."""
        return RUNS_DIR / self.name / stage


def _sample(name: str) -> Path:
    return SAMPLE_DIR / name


SMALL_VOCAB = 2048  # enough for the bilingual sample corpus (1024 splits Chinese into bytes)

_SMOKE = Profile(
    name="smoke",
    description="tests and CI: seconds per stage",
    model=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               vocab_size=SMALL_VOCAB, max_position_embeddings=512),
    tokenizer=_sample("tokenizer"),
    eval_qa=_sample("eval_qa.jsonl"),
    stages={
        "pretrain": StageRecipe(_sample("pretrain.jsonl"), 1, 8, 1, 3e-3, 128, max_steps=30, log_every=5),
        "sft": StageRecipe(_sample("sft.jsonl"), 1, 8, 1, 1e-3, 128, max_steps=20, log_every=5, init="pretrain"),
        "lora": StageRecipe(_sample("lora.jsonl"), 1, 8, 1, 3e-3, 128, max_steps=20, log_every=5, init="sft",
                            extra=dict(rank=8, alpha=16)),
        "dpo": StageRecipe(_sample("dpo.jsonl"), 1, 4, 1, 1e-4, 128, max_steps=10, log_every=5, init="sft",
                           extra=dict(beta=0.1)),
        "distill": StageRecipe(_sample("sft.jsonl"), 1, 8, 1, 1e-3, 128, max_steps=10, log_every=5,
                               extra=dict(alpha=0.5, temperature=1.5, teacher="sft",
                                          student=dict(num_hidden_layers=1))),
    },
)

_TINY = Profile(
    name="tiny",
    description="CPU learners: minutes per stage, and the model visibly learns",
    model=dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
               vocab_size=SMALL_VOCAB, max_position_embeddings=1024),
    tokenizer=_sample("tokenizer"),
    eval_qa=_sample("eval_qa.jsonl"),
    stages={
        "pretrain": StageRecipe(_sample("pretrain.jsonl"), 1, 8, 1, 3e-3, 256, max_steps=1200, warmup=20,
                                log_every=20, save_every=300),
        "sft": StageRecipe(_sample("sft.jsonl"), 1, 32, 1, 1e-3, 256, max_steps=150, log_every=10, init="pretrain",
                           extra=dict(mix_pretrain=True)),
        "lora": StageRecipe(_sample("lora.jsonl"), 1, 16, 1, 2e-3, 256, max_steps=60, log_every=10, init="sft",
                            extra=dict(rank=8, alpha=16)),
        "dpo": StageRecipe(_sample("dpo.jsonl"), 1, 8, 1, 5e-5, 256, max_steps=40, log_every=10, init="sft",
                           extra=dict(beta=0.1)),
        "distill": StageRecipe(_sample("sft.jsonl"), 1, 16, 1, 1e-3, 256, max_steps=60, log_every=10,
                               extra=dict(alpha=0.5, temperature=1.5, teacher="sft",
                                          student=dict(num_hidden_layers=2))),
    },
)

_FULL = Profile(
    name="full",
    description="GPU learners: MiniMind2-Small (25.83M) with MiniMind's recipe",
    model=dict(),  # MiniMindConfig() is MiniMind2-Small
    tokenizer=DATA_DIR / "tokenizer_6400",
    eval_qa=_sample("eval_qa.jsonl"),
    stages={
        "pretrain": StageRecipe(DATA_DIR / "pretrain_hq.jsonl", 1, 32, 8, 5e-4, 512, log_every=100,
                                save_every=1000),
        "sft": StageRecipe(DATA_DIR / "sft_mini_512.jsonl", 2, 16, 1, 5e-6, 512, log_every=100,
                           save_every=1000, init="pretrain"),
        "lora": StageRecipe(DATA_DIR / "lora_identity.jsonl", 50, 32, 1, 1e-4, 512, log_every=10, init="sft",
                            extra=dict(rank=8, alpha=8)),
        "dpo": StageRecipe(DATA_DIR / "dpo.jsonl", 1, 4, 1, 4e-8, 1024, log_every=100, init="sft",
                           extra=dict(beta=0.1)),
        "distill": StageRecipe(DATA_DIR / "sft_mini_512.jsonl", 6, 32, 1, 5e-6, 512, log_every=100, init="sft",
                               extra=dict(alpha=0.5, temperature=1.5)),
    },
)

PROFILES = {p.name: p for p in (_SMOKE, _TINY, _FULL)}


def default_profile_name() -> str:
    name = os.environ.get("MINIMIND_PROFILE", "").strip().lower()
    if name:
        if name not in PROFILES:
            raise ValueError(f"MINIMIND_PROFILE={name!r} is not a profile; expected one of {', '.join(PROFILE_NAMES)}")
        return name
    try:
        import torch

        return "full" if torch.cuda.is_available() else "tiny"
    except Exception:  # pragma: no cover
        return "tiny"


def get_profile(name: str | None = None) -> Profile:
    """The profile called `name`, or the one `MINIMIND_PROFILE` selects (see module docstring)."""
    name = (name or default_profile_name()).lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; expected one of {', '.join(PROFILE_NAMES)}")
    return PROFILES[name]


__all__ = ["Profile", "StageRecipe", "get_profile", "PROFILES", "STAGES", "DATA_DIR", "SAMPLE_DIR",
           "RUNS_DIR", "PROJECT_DIR", "replace"]

"""One switch for the size of everything: the `smoke`, `tiny` and `full` profiles.

`MINIMIND_PROFILE` = smoke | tiny | full picks the model size, the data files, the tokenizer and
every training stage's recipe. Unset, it is `full` where CUDA is available and `tiny` elsewhere.

    smoke  tests and CI: a width-64 model on a slice of the sample corpus, seconds per stage
    tiny   CPU learners: a ~1M-parameter model that learns the sample corpus in minutes
    full   GPU learners: MiniMind2-Small (25.83M) with MiniMind's recipe on MiniMind's data (the
           files of March 2026: pretrain_t2t_mini, sft_t2t_mini, dpo; the LoRA stage uses the
           identity set the course ships, sample/identity.jsonl)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .paths import DATA_DIR, PROJECT_DIR, RUNS_DIR, SAMPLE_DIR
from .train.config import DistillKnobs, DPOKnobs, GRPOKnobs, LoRAKnobs, SFTKnobs

PROFILE_NAMES = ("smoke", "tiny", "full")
STAGES = ("pretrain", "sft", "lora", "dpo", "distill", "grpo")


@dataclass(frozen=True, kw_only=True)
class StageRecipe:
    """One stage's defaults in a profile. `max_steps` (optimizer steps) wins over `epochs` when set.

    The fields are TrainConfig's schedule options (train/config.py explains each); `init` names
    the stage whose run this one starts from, and the knobs hold the stage's own settings.
    """

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
    val_fraction: float = 0.0        # share of the data held out to measure val_loss (never trained on)
    init: str | None = None          # the stage whose checkpoint this stage starts from
    sft: SFTKnobs = field(default_factory=SFTKnobs)
    lora: LoRAKnobs = field(default_factory=LoRAKnobs)
    dpo: DPOKnobs = field(default_factory=DPOKnobs)
    distill: DistillKnobs = field(default_factory=DistillKnobs)
    grpo: GRPOKnobs = field(default_factory=GRPOKnobs)


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


HOLDOUT = 0.02  # the sample corpus' pretraining and SFT files: 1 example in 50 measures val_loss


def _own_pairs(profile: str) -> Path:
    """Self-generated DPO pairs: the profile's SFT model's own replies against the styled truth (course.dpo_pairs)."""
    return RUNS_DIR / profile / "dpo_pairs.jsonl"


def _own_prompts(profile: str) -> Path:
    """GRPO prompts: every question about the training half of the sample world (course.grpo_prompts)."""
    return RUNS_DIR / profile / "grpo_prompts.jsonl"


SMALL_VOCAB = 2048  # enough for the bilingual sample corpus (1024 splits Chinese into bytes)

_SMOKE = Profile(
    name="smoke",
    description="tests and CI: seconds per stage",
    model=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               vocab_size=SMALL_VOCAB, max_position_embeddings=512),
    tokenizer=_sample("tokenizer"),
    eval_qa=_sample("eval_qa.jsonl"),
    stages={
        "pretrain": StageRecipe(data=_sample("pretrain.jsonl"), epochs=1, batch_size=8, accum=1, lr=3e-3,
                                seq_len=128, max_steps=30, log_every=5, val_fraction=HOLDOUT),
        # 320: a conversation with tools needs up to ~300 positions (its system prompt alone ~190)
        "sft": StageRecipe(data=_sample("sft.jsonl"), epochs=1, batch_size=8, accum=1, lr=1e-3, seq_len=320,
                           max_steps=20, log_every=5, init="pretrain", val_fraction=HOLDOUT),
        "lora": StageRecipe(data=_sample("lora.jsonl"), epochs=1, batch_size=8, accum=1, lr=3e-3, seq_len=128,
                            max_steps=20, log_every=5, init="sft", lora=LoRAKnobs(rank=8, alpha=16)),
        "dpo": StageRecipe(data=_own_pairs("smoke"), epochs=1, batch_size=8, accum=1, lr=3e-3, seq_len=128,
                           max_steps=60, log_every=10, init="sft", dpo=DPOKnobs(beta=0.1, sft_weight=1.0)),
        "distill": StageRecipe(data=_sample("distill.jsonl"), epochs=1, batch_size=8, accum=1, lr=1e-3, seq_len=128,
                               max_steps=10, log_every=5, val_fraction=0.05,
                               distill=DistillKnobs(teacher="sft", student_layers=(0,))),
        "grpo": StageRecipe(data=_own_prompts("smoke"), epochs=1, batch_size=4, accum=1, lr=1e-3, seq_len=128,
                            max_steps=10, log_every=5, init="sft",
                            grpo=GRPOKnobs(group_size=4, max_new_tokens=24)),
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
        "pretrain": StageRecipe(data=_sample("pretrain.jsonl"), epochs=1, batch_size=8, accum=1, lr=3e-3,
                                seq_len=256, max_steps=1200, warmup=20, log_every=20, save_every=300,
                                val_fraction=HOLDOUT),
        # 320, not 256: the conversations with tools need up to ~300 positions
        "sft": StageRecipe(data=_sample("sft.jsonl"), epochs=1, batch_size=32, accum=1, lr=1e-3, seq_len=320,
                           max_steps=150, log_every=10, init="pretrain", sft=SFTKnobs(mix_pretrain=True),
                           val_fraction=HOLDOUT),
        "lora": StageRecipe(data=_sample("lora.jsonl"), epochs=1, batch_size=16, accum=1, lr=2e-3, seq_len=256,
                            max_steps=60, log_every=10, init="sft", lora=LoRAKnobs(rank=8, alpha=16)),
        "dpo": StageRecipe(data=_own_pairs("tiny"), epochs=1, batch_size=8, accum=1, lr=3e-4, seq_len=256,
                           max_steps=40, log_every=5, init="sft", dpo=DPOKnobs(beta=0.1, sft_weight=1.0)),
        # the student is 2 of the SFT model's 4 layers (DistilBERT's initialisation), repaired on a transfer
        # set the teacher has not memorised (sample/distill.jsonl), with or without its soft labels: on
        # text it memorised (sft.jsonl) its soft labels are nearly the hard labels and add little (lesson 09)
        "distill": StageRecipe(data=_sample("distill.jsonl"), epochs=1, batch_size=8, accum=1, lr=1e-3, seq_len=256,
                               max_steps=120, log_every=15, val_fraction=0.05,
                               distill=DistillKnobs(teacher="sft", temperature=2.0, student_layers=(0, 2))),
        # sampled at temperature 1.3, the SFT model misses one training question in ten or so: enough
        # groups with mixed rewards to learn from (at 1.0 most groups are all right and teach nothing)
        "grpo": StageRecipe(data=_own_prompts("tiny"), epochs=1, batch_size=8, accum=1, lr=1e-4, seq_len=256,
                            max_steps=150, log_every=5, init="sft",
                            grpo=GRPOKnobs(group_size=8, max_new_tokens=32, temperature=1.3)),
    },
)

# MiniMind2-Small on the files MiniMind publishes today (MiniMind-3, March 2026), with the learning
# rates and lengths of MiniMind's current trainer/*.py defaults. Every stage runs one epoch: the
# "2 hours on one 3090" MiniMind quotes is one epoch of each file (its scripts default to two).
_FULL = Profile(
    name="full",
    description="GPU learners: MiniMind2-Small (25.83M) with MiniMind's recipe",
    model=dict(),  # MiniMindConfig() is MiniMind2-Small
    tokenizer=DATA_DIR / "tokenizer_6400",
    eval_qa=_sample("eval_qa.jsonl"),
    stages={
        # lr 5e-4 and 32 x 8 sequences per update as MiniMind; 768 is MiniMind's length for this file,
        # and packing fills every position, so a longer block costs only attention
        "pretrain": StageRecipe(data=DATA_DIR / "pretrain_t2t_mini.jsonl", epochs=1, batch_size=32, accum=8,
                                lr=5e-4, seq_len=768, log_every=100, save_every=1000, val_fraction=0.005),
        # lr 1e-5, batch 16, 768 tokens: MiniMind's current full-SFT defaults (MiniMind2 used 5e-7 at 512)
        "sft": StageRecipe(data=DATA_DIR / "sft_t2t_mini.jsonl", epochs=1, batch_size=16, accum=1, lr=1e-5,
                           seq_len=768, log_every=100, save_every=1000, init="pretrain", val_fraction=0.005),
        # the course's own identity set (identity.py); lr 1e-4, batch 32 as MiniMind; 20 epochs of its
        # 66 KB is about the text MiniMind's 50 epochs of the 23 KB lora_identity.jsonl gave; 340 tokens
        # (MiniMind's LoRA length) hold every conversation
        "lora": StageRecipe(data=_sample("identity.jsonl"), epochs=20, batch_size=32, accum=1, lr=1e-4,
                            seq_len=340, log_every=10, init="sft", lora=LoRAKnobs(rank=8, alpha=8)),
        # MiniMind's current DPO: lr 4e-8 (it warns that more makes the model forget), beta 0.15, 1024
        # tokens, and the sequence score is the sum of the reply's token log-probs (MiniMind2: the mean)
        "dpo": StageRecipe(data=DATA_DIR / "dpo.jsonl", epochs=1, batch_size=4, accum=1, lr=4e-8, seq_len=1024,
                           log_every=100, init="sft", dpo=DPOKnobs(beta=0.15, score="sum")),
        # MiniMind's distillation: lr 5e-6, batch 32, 6 epochs, on the SFT file; 768 as the SFT stage
        "distill": StageRecipe(data=DATA_DIR / "sft_t2t_mini.jsonl", epochs=6, batch_size=32, accum=1, lr=5e-6,
                               seq_len=768, log_every=100, init="sft"),
        # MiniMind's GRPO: lr 3e-7, 2 prompts x 6 replies, beta 0.1, clip 0.2, prompts up to 768 tokens and
        # replies up to 1024. MiniMind scores rlaif.jsonl's open prompts with a 1.8B reward model; the course
        # trains on agent_rl_math.jsonl, whose records carry a checkable answer ("gt"), with the rule-based reward
        "grpo": StageRecipe(data=DATA_DIR / "agent_rl_math.jsonl", epochs=1, batch_size=2, accum=1, lr=3e-7,
                            seq_len=768, log_every=10, save_every=100, init="sft",
                            grpo=GRPOKnobs(group_size=6, beta=0.1, clip_eps=0.2, max_new_tokens=1024,
                                           temperature=0.8)),
    },
)

PROFILES = {p.name: p for p in (_SMOKE, _TINY, _FULL)}


def default_profile_name() -> str:
    name = os.environ.get("MINIMIND_PROFILE", "").strip().lower()
    if name:
        if name not in PROFILES:
            raise ValueError(f"MINIMIND_PROFILE={name!r} is not a profile; expected one of {', '.join(PROFILE_NAMES)}")
        return name
    import torch

    return "full" if torch.cuda.is_available() else "tiny"


def get_profile(name: str | None = None) -> Profile:
    """The profile called `name`, or the one `MINIMIND_PROFILE` selects (see module docstring)."""
    name = (name or default_profile_name()).lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; expected one of {', '.join(PROFILE_NAMES)}")
    return PROFILES[name]


__all__ = ["Profile", "StageRecipe", "get_profile", "PROFILES", "STAGES", "DATA_DIR", "SAMPLE_DIR",
           "RUNS_DIR", "PROJECT_DIR", "SFTKnobs", "LoRAKnobs", "DPOKnobs", "DistillKnobs", "GRPOKnobs"]

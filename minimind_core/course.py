"""What the lessons need from earlier lessons, made on demand.

Every notebook can be opened first: when it needs a checkpoint an earlier lesson makes (say the
pretrained model for the attention maps of lesson 03) and there is none for the current profile,
it says so and trains one here, prerequisites first. In the `full` profile, when MiniMind's data
files are missing, it says how to fetch them and stops.

    from minimind_core.course import load_stage
    model, tokenizer = load_stage("pretrain")      # runs/<profile>/pretrain, trained if missing
"""
from __future__ import annotations

from pathlib import Path

from .profiles import Profile, get_profile

# which `data download` name provides each of the full profile's files
_DOWNLOAD_NAMES = {
    "pretrain_hq.jsonl": "pretrain_hq",
    "sft_mini_512.jsonl": "sft_mini_512",
    "lora_identity.jsonl": "lora_identity",
    "dpo.jsonl": "dpo",
}


class MissingDataError(FileNotFoundError):
    """A data file the profile needs is not on disk; the message says how to get it."""


def _profile(profile) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


def require_data(path: str | Path) -> Path:
    """`path` if it exists, else a MissingDataError that says how to fetch it."""
    path = Path(path)
    if path.exists():
        return path
    name = _DOWNLOAD_NAMES.get(path.name, path.stem)
    raise MissingDataError(
        f"{path} is missing. Fetch MiniMind's file with\n"
        f"    python -m minimind_core data download {name}\n"
        f"(or choose a smaller profile: MINIMIND_PROFILE=tiny uses the bundled sample corpus)")


def require_tokenizer(profile=None, max_lines: int = 200_000):
    """The profile's tokenizer; in `full`, trained once on MiniMind's pretraining text if missing."""
    from .tokenizer import load_tokenizer, train_tokenizer

    prof = _profile(profile)
    if (Path(prof.tokenizer) / "tokenizer.json").exists():
        return load_tokenizer(prof.tokenizer)
    data = require_data(prof.stage("pretrain").data)
    vocab = prof.model_config().vocab_size
    print(f"No tokenizer at {prof.tokenizer}: training a {vocab}-token BPE tokenizer on the first "
          f"{max_lines:,} documents of {data} (a few minutes) ...")
    import itertools
    import json

    def texts():
        with open(data, encoding="utf-8") as f:
            for line in itertools.islice(f, max_lines):
                if line.strip():
                    yield json.loads(line)["text"]

    train_tokenizer(texts(), vocab, prof.tokenizer)
    return load_tokenizer(prof.tokenizer)


def checkpoint_of(stage: str, profile=None) -> Path | None:
    """The newest complete checkpoint of the profile's run folder for `stage`, or None."""
    from .checkpoint import latest_checkpoint

    return latest_checkpoint(_profile(profile).run_dir(stage))


def require_checkpoint(stage: str, profile=None, **train_overrides) -> Path:
    """The newest checkpoint of runs/<profile>/<stage>, training it (and what it starts from) if missing."""
    from .train import train

    prof = _profile(profile)
    found = checkpoint_of(stage, prof)
    if found is not None:
        return found
    recipe = prof.stage(stage)
    print(f"No '{stage}' checkpoint for the {prof.name} profile in {prof.run_dir(stage)}: "
          f"training one now (the {stage} lesson makes the same run).")
    require_tokenizer(prof)
    require_data(recipe.data)
    if recipe.init:
        require_checkpoint(recipe.init, prof)
    if stage == "distill":
        require_checkpoint("sft", prof)
    # the run folder may hold an unfinished run without a complete checkpoint: nothing to keep there
    train_overrides.setdefault("overwrite", True)
    result = train(stage, profile=prof, **train_overrides)
    return result.checkpoint


def load_stage(stage: str, profile=None, device: str | None = None):
    """(model, tokenizer) of the profile's `stage` checkpoint, trained first if missing.

    The model is in eval mode, on `device` (default: CUDA when available).
    """
    from .checkpoint import load_model_and_tokenizer

    return load_model_and_tokenizer(require_checkpoint(stage, profile), device=device)

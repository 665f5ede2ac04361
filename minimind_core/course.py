"""What the lessons need from earlier lessons, made on demand.

Every notebook can be opened first: when it needs a checkpoint an earlier lesson makes (say the
pretrained model for the attention maps of lesson 03) and the current profile has no finished
run of that stage, `load_stage` and `checkpoint_or_train` say so in one line and train it,
prerequisites first. Nothing is thrown away on the way: an unfinished run is resumed from its
newest checkpoint, a finished one is reused. In the `full` profile, when MiniMind's data files
are missing, they say how to fetch them and stop.

    from minimind_core.course import load_stage
    model, tokenizer = load_stage("pretrain")      # runs/<profile>/pretrain; trains it if unfinished
"""
from __future__ import annotations

import time
from pathlib import Path

from .errors import CheckpointError
from .profiles import Profile, get_profile



class MissingDataError(FileNotFoundError):
    """A data file the profile needs is not on disk; the message says how to get it."""


def _profile(profile) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


def require_data(path: str | Path) -> Path:
    """`path` if it exists, else a MissingDataError that says how to fetch it (or, for a file
    MiniMind no longer publishes, what replaces it)."""
    from .download import REGISTRY, retired_message

    path = Path(path)
    if path.exists():
        return path
    stem = path.name.removesuffix(".jsonl")
    retired = retired_message(stem)
    if retired:
        raise MissingDataError(f"{path} is missing, and {retired}")
    if path.name in REGISTRY:
        f = REGISTRY[path.name]
        how = (f"Fetch MiniMind's file ({f.description}) with\n"
               f"    python -m minimind_core data download {stem}\n")
    else:
        how = "It is not one of MiniMind's published files: check the path.\n"
    raise MissingDataError(
        f"{path} is missing. {how}"
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


def checkpoint_or_train(stage: str, profile=None, *, quiet: bool = False, **train_overrides) -> Path:
    """The checkpoint of the profile's finished `stage` run, TRAINING it first when there is none.

    A finished run (runs/<profile>/<stage>) is reused. Otherwise one line says what happens and
    the stage is trained with its recipe, after what it starts from: an unfinished run is resumed
    from its newest checkpoint, an empty folder starts from the beginning; nothing is overwritten.
    With quiet=True the run's log lines go to train.log in its run folder instead of the output,
    so a lesson that only needs the model shows one line, not the whole run.
    """
    from .checkpoint import run_status
    from .train import train

    prof = _profile(profile)
    run_dir = prof.run_dir(stage)
    status, latest = run_status(run_dir)
    if status == "complete":
        return latest
    if status == "unfinished":
        print(f"The '{stage}' run of the {prof.name} profile in {run_dir} is unfinished (newest checkpoint "
              f"{latest.name}): resuming it now; the {stage} lesson reuses this run instead of training again.")
    else:
        print(f"No '{stage}' checkpoint for the {prof.name} profile in {run_dir}: "
              f"training it now, once; the {stage} lesson reuses this run instead of training again.")
    recipe = prof.stage(stage)
    require_tokenizer(prof)
    own_pairs = stage == "dpo" and Path(recipe.data) == self_pairs_path(prof)
    own_prompts = stage == "grpo" and Path(recipe.data) == grpo_prompts_path(prof)
    if own_prompts:
        grpo_prompts(prof)
    elif not own_pairs:
        require_data(recipe.data)
    for needed in _prerequisites(stage, recipe):
        checkpoint_or_train(needed, prof, quiet=quiet)
    if own_pairs:
        dpo_pairs(prof)
    if not quiet:
        return train(stage, profile=prof, **{"resume": True, **train_overrides}).checkpoint
    import contextlib

    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(run_dir / "train.log", "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        result = train(stage, profile=prof, **{"resume": True, "progress": False, **train_overrides})
    print(f"  done in {(time.time() - t0) / 60:.1f} min: {result.steps} steps, final loss {result.final_loss:.3f}; "
          f"the log is in {run_dir / 'train.log'}")
    return result.checkpoint


# how many training-half questions the SFT model answers to find its mistakes (None: all of them)
_QUESTIONS_ASKED = {"smoke": 48, "tiny": None}


def self_pairs_path(profile=None, heldout: bool = False) -> Path:
    """runs/<profile>/dpo_pairs.jsonl: where a sample profile's self-generated DPO pairs live
    (`heldout=True`: dpo_pairs_heldout.jsonl, the pairs about facts held out of training)."""
    return _profile(profile).run_dir("dpo").parent / ("dpo_pairs_heldout.jsonl" if heldout else "dpo_pairs.jsonl")


def dpo_pairs(profile=None, heldout: float = 0.25) -> Path:
    """The profile's DPO training pairs, MADE from the SFT model's own replies when missing.

    `full`: MiniMind's dpo.jsonl (MissingDataError says how to download it). The sample profiles:
    the SFT model (trained first if needed) answers questions about the training half of the
    sample world greedily; its reply is the rejected side and the true answer closed with a
    remark the SFT data lacks the chosen side (preferences.style_pairs: a right reply makes a
    style pair, a wrong one a fact pair). Whole facts, about `heldout` of them, go to
    dpo_pairs_heldout.jsonl to measure the effect on pairs DPO never saw. Made once; delete the
    files to make them again (say after retraining SFT).
    """
    from . import preferences

    prof = _profile(profile)
    path = prof.stage("dpo").data
    if Path(path) != self_pairs_path(prof):
        return require_data(path)
    if not 0.0 < heldout < 1.0:
        raise ValueError(f"heldout must be in (0, 1), got {heldout}")
    held_path = self_pairs_path(prof, heldout=True)
    if Path(path).exists() and held_path.exists():
        return Path(path)
    model, tokenizer = load_stage("sft", prof, device="cpu")
    items = preferences.fact_questions("train")
    limit = _QUESTIONS_ASKED.get(prof.name)
    if limit is not None:
        items = items[::max(1, len(items) // limit)][:limit]
    print(f"Making the {prof.name} profile's DPO pairs: the SFT model answers {len(items)} questions "
          "about the training half of the sample world ...")
    pairs, counts = preferences.style_pairs(model, tokenizer, items)
    train_part, held_part = preferences.split_by_fact(pairs, heldout=heldout)
    if not train_part or not held_part:
        raise CheckpointError(f"the {prof.name} SFT model's replies to {len(items)} training-half questions make "
                              f"{len(pairs)} pair(s): too few for training and held-out DPO pairs")
    preferences.write_jsonl(held_path, preferences.to_pairs(held_part))
    preferences.write_jsonl(path, preferences.to_pairs(train_part))
    print(f"  {counts['style']} right replies without the remark (style pairs), {counts['fact']} wrong "
          f"(fact pairs), {counts['already']} already in style (no pair); {len(train_part)} pairs in {path}, "
          f"{len(held_part)} held-out pairs in {held_path.name}")
    return Path(path)


def grpo_prompts_path(profile=None) -> Path:
    """runs/<profile>/grpo_prompts.jsonl: where a sample profile's GRPO prompts live."""
    return _profile(profile).run_dir("grpo").parent / "grpo_prompts.jsonl"


def grpo_prompts(profile=None) -> Path:
    """The profile's GRPO prompts, WRITTEN when missing: for the sample profiles, every question
    about the training half of the sample world (preferences.fact_questions("train"), eval_qa
    records: the question, the expected answer and the choices a reply must not name), so the
    held-out half (eval_qa.jsonl) measures what GRPO did to facts it never asked about.
    `full`: MiniMind's file (MissingDataError says how to download it). No model is needed.
    """
    from . import preferences

    prof = _profile(profile)
    path = Path(prof.stage("grpo").data)
    if path != grpo_prompts_path(prof):
        return require_data(path)
    if not path.exists():  # every rank of a torchrun job may get here: each writes its own file, renamed
        import json
        import os

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for it in preferences.fact_questions("train"):
                f.write(json.dumps({k: v for k, v in it.items() if k != "fact"}, ensure_ascii=False) + "\n")
        tmp.replace(path)
    return path


def _prerequisites(stage: str, recipe) -> list[str]:
    """The stages whose models `stage` starts from (its init; distillation's teacher too)."""
    needed = [recipe.init] if recipe.init else []
    if stage == "distill" and "sft" not in needed:
        needed.append("sft")
    return needed


# the reasoning students (lesson 09): the SFT model fine-tuned on the teacher's traces, or on the answers alone
REASONING_RECIPE = {"smoke": dict(max_steps=12, batch_size=8, lr=1e-3, log_every=4),
                    "tiny": dict(max_steps=60, batch_size=16, lr=1e-3, log_every=10)}


def reasoning_data(profile=None) -> tuple[Path, Path]:
    """(traces, answers): the sample profiles' reasoning-distillation data, MADE when missing.

    The SFT model (trained first if needed) is the teacher: for every two-hop question about the
    training half of the sample world it asks itself the two single-hop questions and answers them
    (reasoning.teacher_traces); only traces whose conclusion is right are kept (rejection sampling).
    runs/<profile>/reason_traces.jsonl holds them with their thinking, reason_answers.jsonl the same
    questions with the answers alone. Made once; delete the files to make them again.
    """
    from . import reasoning

    prof = _profile(profile)
    runs = prof.run_dir("sft").parent
    paths = runs / "reason_traces.jsonl", runs / "reason_answers.jsonl"
    if all(p.exists() for p in paths):
        return paths
    model, tokenizer = load_stage("sft", prof, device="cpu", quiet=True)
    items = reasoning.two_hop_questions("train")
    traces = reasoning.teacher_traces(model, tokenizer, items)
    kept = [t for t in traces if t.correct]
    print(f"The {prof.name} SFT model wrote {len(traces)} two-hop traces; {len(kept)} reach the right country "
          f"and are kept, {len(traces) - len(kept)} are rejected")
    if len(kept) < _MIN_TRACES:  # a teacher this weak has too little to teach: complete from the world's facts
        extra = [reasoning.reference_trace(t.item) for t in traces if not t.correct][:_MIN_TRACES - len(kept)]
        kept += extra
        print(f"  too few to learn from: {len(extra)} traces written from the sample world's facts complete them")
    reasoning.write_jsonl(paths[1], reasoning.to_conversations(kept, think=False))
    reasoning.write_jsonl(paths[0], reasoning.to_conversations(kept, think=True))
    return paths


_MIN_TRACES = 40


def train_reasoner(think: bool, profile=None, seed: int = 1337, **overrides):
    """Fine-tune the SFT model on the teacher's traces (`think`) or on the answers alone; returns
    train()'s RunResult. The run folder is runs/<profile>/reason_think or reason_answers (or `out=`)."""
    from .train import train

    prof = _profile(profile)
    traces, answers = reasoning_data(prof)
    recipe = {**REASONING_RECIPE.get(prof.name, {}), **overrides}
    out = recipe.pop("out", prof.run_dir("sft").parent / ("reason_think" if think else "reason_answers"))
    return train("sft", profile=prof, data=traces if think else answers, init=checkpoint_or_train("sft", prof),
                 out=out, seed=seed, mix_pretrain=False, val_fraction=0.0, overwrite=True, **recipe)


def load_stage(stage: str, profile=None, device: str | None = None, *, train_missing: bool = True,
               quiet: bool = False):
    """(model, tokenizer) of the profile's `stage` run, which is TRAINED first when unfinished.

    See `checkpoint_or_train`: the training is announced in one line and resumes what is there.
    With `train_missing=False` an unfinished or missing run raises CheckpointError instead;
    `quiet=True` keeps the training log out of the output (checkpoint_or_train).
    The model is in eval mode, on `device` (default: CUDA when available).
    """
    from .checkpoint import load_model_and_tokenizer

    path = (checkpoint_or_train(stage, profile, quiet=quiet) if train_missing
            else _finished_checkpoint(stage, _profile(profile)))
    return load_model_and_tokenizer(path, device=device)


def _finished_checkpoint(stage: str, prof: Profile) -> Path:
    from .checkpoint import run_status

    status, latest = run_status(prof.run_dir(stage))
    if status != "complete":
        raise CheckpointError(f"{prof.run_dir(stage)}: no finished '{stage}' run of the {prof.name} profile "
                              f"({status}); train it (python -m minimind_core train {stage} --profile {prof.name} "
                              "--resume) or pass train_missing=True")
    return latest

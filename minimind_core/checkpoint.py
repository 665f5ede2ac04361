"""Run folders, crash-safe checkpoints, resume state and the metrics file.

A run folder (e.g. runs/tiny/pretrain) holds

    run.json                    what was asked for (stage, profile, resolved options)
    metrics.jsonl               one JSON object per logged step (step, tokens, loss, lr, ...)
    checkpoints/step_000600/    one complete checkpoint per saved step, newest last:
        config.json, model.safetensors     the model in the Hugging Face layout
                                            (LoRA runs: adapter.safetensors + adapter_config.json)
        tokenizer.json, ...                 the tokenizer, so the folder is self-contained
        configuration_minimind.py, ...      the modeling code (model_code.py), named in config.json's
                                            auto_map: transformers loads the folder without this package
        trainer_state.pt                    optimizer, scaler, step, data position, RNG of every rank
        checkpoint.json                     step, tokens seen, loss; written last
    config.json, model.safetensors, ...     the newest checkpoint's model files again, as hard links
                                            (no extra disk), so the run folder itself is a model folder
                                            for `from_pretrained`

Saving is atomic: a checkpoint is written into a hidden temporary folder, every file is
fsynced, and only then is the folder renamed to its final name (a rename within one file
system is atomic). The previous checkpoint stays until the new one is complete, so a crash
or a kill at any moment, during a save too, leaves the newest complete checkpoint loadable.
Old checkpoints are retired by first renaming them to a hidden name, then deleting them.
(MiniMind overwrote its `.pth` in place: a crash mid-save lost it.)

Loading never executes code: weights come from safetensors and the resume state is read
with `torch.load(weights_only=True)`. The library loads its own model class, never the code
copied into a folder (that copy is for processes without minimind_core), and reads Llama and
Qwen3 folders too (exports, or models from elsewhere): converted to our model when it can express
them, through transformers' own class otherwise.

Every folder written here is read alike by transformers from 4.46 on: `save_model_folder` adds
what older versions look for (a top-level `rope_theta`, `torch_dtype`, a tokenizer class they have).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import torch

from .errors import CheckpointError

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
RUN_INFO = "run.json"
TRAINER_STATE = "trainer_state.pt"
CHECKPOINT_INFO = "checkpoint.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def _quiet_transformers():
    """No progress bars from transformers while a checkpoint is written or read."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


# ----------------------------------------------------------------------------------------------
# small atomic-file helpers


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for d in [path, *sorted(q for q in path.rglob("*") if q.is_dir())]:
        _fsync_dir(d)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


# ----------------------------------------------------------------------------------------------
# finding checkpoints


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoints of a run folder, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _STEP_DIR.match(d.name)
        if m and d.is_dir() and (d / CHECKPOINT_INFO).is_file():
            found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run folder, or None when it has none."""
    cps = list_checkpoints(run_dir)
    return cps[-1] if cps else None


def is_model_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and (
        (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file())


def is_adapter_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / ADAPTER_CONFIG).is_file() and (path / ADAPTER_WEIGHTS).is_file()


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, a LoRA adapter folder, or a run folder (-> its newest checkpoint).

    Raises CheckpointError with a one-line explanation for anything else.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such folder")
    if not p.is_dir():
        raise CheckpointError(f"{p}: expected a model folder or a run folder, found a file")
    latest = latest_checkpoint(p)     # a run folder: its newest checkpoint (its top level mirrors it)
    if latest is not None:
        return latest
    if is_model_dir(p) or is_adapter_dir(p):
        return p
    if (p / CHECKPOINTS).is_dir() or (p / RUN_INFO).is_file():
        raise CheckpointError(f"{p}: run folder without a complete checkpoint (did the run save one?)")
    if (p / "config.json").is_file():
        raise CheckpointError(f"{p}: has config.json but no model.safetensors (a MiniMind .pth state dict "
                              "loads with MiniMindForCausalLM(config).load_state_dict(torch.load(path)))")
    raise CheckpointError(f"{p}: not a model folder (config.json + model.safetensors) "
                          "and not a run folder (checkpoints/step_*)")


# ----------------------------------------------------------------------------------------------
# saving


def _compatible_config(folder: Path) -> None:
    """Add to config.json what transformers before 5.0 read: `rope_theta` at the top level and a
    scaled RoPE (YaRN) as `rope_scaling` (5.x writes both only inside `rope_parameters`, and 4.x
    would silently use its default base of 10000, unscaled), and `torch_dtype` (5.x writes `dtype`)."""
    path = folder / "config.json"
    cfg = read_json(path)
    rope = cfg.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:
        cfg.setdefault("rope_theta", rope["rope_theta"])
        kind = rope.get("rope_type", "default")
        if kind != "default" and not cfg.get("rope_scaling"):
            cfg["rope_scaling"] = {**{k: v for k, v in rope.items() if k != "rope_theta"}, "type": kind}
    if "dtype" in cfg and "torch_dtype" not in cfg:
        cfg["torch_dtype"] = cfg["dtype"]
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_model_folder(folder: str | Path, model=None, tokenizer=None) -> Path:
    """Write a model folder that transformers from 4.46 on loads alike: `save_pretrained`'s files
    with a compatible config.json, the tokenizer (tokenizer.save_tokenizer) and, for a MiniMind
    model, the modeling code with config.json's auto_map (model_code.py)."""
    from .model_code import write_model_code
    from .tokenizer import save_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _quiet_transformers()
    if model is not None:
        model.save_pretrained(str(folder), safe_serialization=True)
        _compatible_config(folder)
        if model.config.model_type == "minimind":
            write_model_code(folder)
    if tokenizer is not None:
        save_tokenizer(tokenizer, folder)
    return folder


def save_checkpoint(run_dir: str | Path, step: int, *, model=None, tokenizer=None,
                    trainer_state: dict | None = None, info: dict | None = None,
                    adapter: tuple[dict, dict] | None = None, keep: int = 2) -> Path:
    """Write checkpoint `checkpoints/step_{step:06d}` of `run_dir` atomically and return it.

    model:          saved with save_pretrained (config.json + model.safetensors) unless None
    adapter:        (state_dict, config) of LoRA adapter weights, saved instead of / beside the model
    trainer_state:  everything needed to resume (torch.save, loaded back with weights_only=True)
    keep:           how many complete checkpoints to keep (>= 1); older ones are removed only
                    after the new one is complete
    """
    from safetensors.torch import save_file

    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp-step_{step:06d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model_folder(tmp, model, tokenizer)
    if adapter is not None:
        state, config = adapter
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp / ADAPTER_WEIGHTS))
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")
    if trainer_state is not None:
        torch.save(trainer_state, tmp / TRAINER_STATE)
    # checkpoint.json last: a folder with it is complete
    (tmp / CHECKPOINT_INFO).write_text(json.dumps({"step": step, **(info or {})}, indent=2, default=str) + "\n",
                                       encoding="utf-8")
    _fsync_tree(tmp)
    if final.exists():  # the same step saved again (e.g. the final save right after a periodic one)
        _retire(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(run_dir)[:-max(1, keep)]:
        _retire(old)
    if model is not None:
        _mirror_model_files(final, Path(run_dir))
    return final


_NOT_MIRRORED = {TRAINER_STATE, CHECKPOINT_INFO}


def _mirrored_names(checkpoint: Path) -> list[str]:
    """The files of a checkpoint that the run folder's top level repeats: the model folder's, with
    config.json last (a reader that finds it finds the rest)."""
    names = [p.name for p in checkpoint.iterdir() if p.is_file() and p.name not in _NOT_MIRRORED]
    return sorted(names, key=lambda n: (n == "config.json", n))


def _mirror_model_files(checkpoint: Path, run_dir: Path) -> None:
    """Make the run folder's top level the newest checkpoint's model folder: each file a hard link
    to the checkpoint's (a copy where the file system has no hard links), put in place with an
    atomic rename. transformers' `from_pretrained(run_dir)` then loads the newest model; the
    library itself resolves a run folder to checkpoints/step_N."""
    for name in _mirrored_names(checkpoint):
        tmp = run_dir / f".{name}.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        try:
            os.link(checkpoint / name, tmp)
        except OSError:
            shutil.copy2(checkpoint / name, tmp)
        os.replace(tmp, run_dir / name)
    _fsync_dir(run_dir)


def _retire(path: Path) -> None:
    """Remove a checkpoint folder: rename it to a hidden name first (atomic), then delete it."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    os.rename(path, trash)
    _fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


def retire_checkpoints(run_dir: str | Path) -> None:
    """Remove every complete checkpoint of a run folder (a run started over with --overwrite), and
    the top-level copy of the newest one's model files."""
    latest = latest_checkpoint(run_dir)
    if latest is not None:
        for name in _mirrored_names(latest):
            (Path(run_dir) / name).unlink(missing_ok=True)
    for c in list_checkpoints(run_dir):
        _retire(c)


def run_status(run_dir: str | Path) -> tuple[str, Path | None]:
    """("complete" | "unfinished" | "empty", the newest checkpoint or None) of a run folder.

    A run is complete when its newest checkpoint reached the step count its run planned
    (checkpoint.json's total_steps; a checkpoint that does not record it counts as complete).
    A folder without a complete checkpoint is "empty": a run there starts from the beginning.
    """
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return "empty", None
    info = read_json(latest / CHECKPOINT_INFO)
    total = info.get("total_steps")
    done = total is None or int(info.get("step", 0)) >= int(total)
    return ("complete" if done else "unfinished"), latest


def clean_partial(run_dir: str | Path) -> None:
    """Delete leftovers of interrupted saves (hidden .tmp-/.trash- folders)."""
    root = Path(run_dir) / CHECKPOINTS
    if root.is_dir():
        for d in root.iterdir():
            if d.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# loading


def load_trainer_state(checkpoint_dir: str | Path) -> dict:
    """The resume state of a checkpoint (read with weights_only=True: no code runs)."""
    path = Path(checkpoint_dir) / TRAINER_STATE
    if not path.is_file():
        raise CheckpointError(f"{checkpoint_dir}: no {TRAINER_STATE} (not a resumable checkpoint)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - turn any unpickling problem into one line
        raise CheckpointError(f"{path}: cannot read the resume state ({type(e).__name__}: {e})") from None


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None


def load_model(path: str | Path, device="cpu", dtype: torch.dtype | None = None):
    """Load a model folder, a run folder's newest checkpoint, or a LoRA adapter folder.

    An adapter folder is loaded as its base model (the folder named in adapter_config.json)
    with the adapter applied (not merged). Weights come from safetensors only. A Llama or Qwen3
    folder (`export llama`, or a model from elsewhere) becomes a MiniMindForCausalLM when our model
    can express it exactly, and is loaded with transformers' own class otherwise (a Qwen3-MoE
    folder, say).
    """
    from . import MiniMindConfig, MiniMindForCausalLM  # noqa: F401 - registers the model type

    d = resolve_model_dir(path)
    if is_adapter_dir(d) and not is_model_dir(d):
        return _load_adapter_model(d, device=device, dtype=dtype)
    cfg = read_json(d / "config.json")
    kind = cfg.get("model_type")
    if kind not in (None, MiniMindConfig.model_type, *FOREIGN_MODEL_TYPES):
        known = ", ".join(map(repr, (MiniMindConfig.model_type, *FOREIGN_MODEL_TYPES)))
        raise CheckpointError(f"{d}/config.json: model_type is {kind!r}; this loader reads {known} folders")
    _quiet_transformers()
    try:
        if kind in FOREIGN_MODEL_TYPES:
            model = _load_foreign(d, cfg, dtype or torch.float32)
        else:
            model = MiniMindForCausalLM.from_pretrained(str(d), dtype=dtype or torch.float32)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{d}: cannot load the model ({type(e).__name__}: {e})") from None
    if is_adapter_dir(d):
        _apply_adapter(model, d)
    return model.to(device)


FOREIGN_MODEL_TYPES = ("llama", "qwen3", "qwen3_moe")


def minimind_config_for(cfg: dict):
    """The MiniMindConfig of the same network as a Llama or Qwen3 config.json (a dict), or None
    when our model cannot express it (biases, another activation, a RoPE scaling other than
    MiniMind's YaRN, sliding windows, a mixture of experts)."""
    from .config import YARN, MiniMindConfig

    kind = cfg.get("model_type")
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    yarn = {k: rope.get(k) for k in YARN} if rope_type == "yarn" else None
    if yarn is not None and yarn.get("attention_factor") is None:
        yarn["attention_factor"] = 1.0
    if (kind not in ("llama", "qwen3") or cfg.get("attention_bias") or cfg.get("mlp_bias")
            or cfg.get("hidden_act", "silu") != "silu" or cfg.get("pretraining_tp", 1) != 1
            or cfg.get("use_sliding_window") or rope_type not in ("default", "yarn") or yarn not in (None, YARN)):
        return None
    heads = cfg["num_attention_heads"]
    theta = cfg.get("rope_theta", rope.get("rope_theta", 10000.0))   # 10000: transformers' own default
    return MiniMindConfig(
        hidden_size=cfg["hidden_size"], num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=cfg.get("num_key_value_heads") or heads, head_dim=cfg.get("head_dim"),
        qk_norm=kind == "qwen3", vocab_size=cfg["vocab_size"], intermediate_size=cfg["intermediate_size"],
        max_position_embeddings=cfg["max_position_embeddings"], rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
        rope_theta=theta, inference_rope_scaling=yarn is not None,
        tie_word_embeddings=cfg.get("tie_word_embeddings", False), bos_token_id=cfg.get("bos_token_id"),
        eos_token_id=cfg.get("eos_token_id"), pad_token_id=cfg.get("pad_token_id"))


def _load_foreign(d: Path, cfg: dict, dtype: torch.dtype):
    """A Llama/Qwen3 folder: as a MiniMindForCausalLM (same weights, same names) when
    `minimind_config_for` can express it, else as transformers' own model class."""
    from transformers import AutoModelForCausalLM

    from .model import MiniMindForCausalLM

    config = minimind_config_for(cfg)
    if config is None:
        return AutoModelForCausalLM.from_pretrained(str(d), dtype=dtype)
    model, info = MiniMindForCausalLM.from_pretrained(str(d), config=config, dtype=dtype, output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or info["unexpected_keys"]:
        raise CheckpointError(f"{d}: the {cfg['model_type']} weights do not fit MiniMind's layout (missing "
                              f"{missing[:3]}, unexpected {info['unexpected_keys'][:3]})")
    return model


def _apply_adapter(model, d: Path):
    from safetensors.torch import load_file

    from . import lora

    cfg = read_json(d / ADAPTER_CONFIG)
    lora.apply_lora(model, rank=cfg["rank"], alpha=cfg["alpha"], targets=cfg.get("targets") or "all")
    lora.load_lora(model, load_file(str(d / ADAPTER_WEIGHTS)))
    return model


def _load_adapter_model(d: Path, device="cpu", dtype=None):
    cfg = read_json(d / ADAPTER_CONFIG)
    base = cfg.get("base")
    if not base:
        raise CheckpointError(f"{d}/{ADAPTER_CONFIG}: no 'base' model folder recorded")
    base_path = Path(base)
    if not base_path.is_absolute():
        base_path = (d / base_path).resolve()
    try:
        model = load_model(base_path, device="cpu", dtype=dtype)
    except CheckpointError as e:
        raise CheckpointError(f"{d}: the adapter's base model cannot be loaded: {e}") from None
    return _apply_adapter(model, d).to(device)


def load_tokenizer_for(path: str | Path):
    """The tokenizer saved beside a model (or in a run folder's newest checkpoint)."""
    from .tokenizer import load_tokenizer

    d = resolve_model_dir(path)
    if is_adapter_dir(d) and not (d / "tokenizer.json").exists():
        base = read_json(d / ADAPTER_CONFIG).get("base")
        d = resolve_model_dir(base)
    return load_tokenizer(d)


def load_model_and_tokenizer(path: str | Path, device: str | torch.device | None = None,
                             dtype: torch.dtype | None = None):
    """(model in eval mode, tokenizer) of a model folder, a run folder (its newest checkpoint) or a
    LoRA adapter folder: the one loader that evaluation, export and the lessons use.

    `device` defaults to CUDA when available. Anything that keeps the pair from working together
    (no folder, no weights, no usable tokenizer, a tokenizer larger than the model's vocabulary)
    is a CheckpointError naming the folder.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(path, device=device, dtype=dtype)
    try:
        tokenizer = load_tokenizer_for(path)
    except (FileNotFoundError, ValueError) as e:  # load_tokenizer's messages name the folder
        raise CheckpointError(str(e)) from None
    if len(tokenizer) > model.config.vocab_size:
        raise CheckpointError(f"{path}: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size "
                              f"is {model.config.vocab_size}")
    return model.eval(), tokenizer


# ----------------------------------------------------------------------------------------------
# RNG states (every rank saves its own; plain Python types so weights_only loading works)


def rng_state() -> dict:
    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np

    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ----------------------------------------------------------------------------------------------
# the metrics file


class MetricsLog:
    """metrics.jsonl: one JSON object per logged step, appended and flushed as training goes.

    On resume, rows after the checkpoint's step are dropped (they will be logged again).
    """

    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        self.path = Path(run_dir) / METRICS
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            atomic_write_text(self.path, "")
        else:
            rows = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a metrics file (or of a run folder's metrics.jsonl); a torn last line is ignored."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a row cut off by a crash: it is the last one
    return rows


__all__ = ["CheckpointError", "save_checkpoint", "list_checkpoints", "latest_checkpoint", "resolve_model_dir",
           "load_model", "load_tokenizer_for", "load_model_and_tokenizer", "load_trainer_state", "rng_state",
           "set_rng_state", "MetricsLog", "read_metrics", "atomic_write_json", "atomic_write_text", "clean_partial",
           "retire_checkpoints", "run_status", "is_model_dir", "is_adapter_dir", "save_model_folder"]

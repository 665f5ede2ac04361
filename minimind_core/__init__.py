"""minimind_core: the library behind the MiniMind course.

MiniMind2-Small (25.83M parameters, Llama-style) and everything needed to build and train it:
tokenizer, data pipeline, training loop (one GPU, many GPUs or a CPU), LoRA, DPO, distillation,
generation, evaluation, plots and widgets.

Importing the package imports nothing heavy: the names below are loaded on first use (PEP 562),
so the command line's `--help`, `data check` and `data download` start without torch or
transformers. Importing minimind_core.config and minimind_core.model (which the first use of these
names does) registers them with transformers' Auto classes, so
`AutoModelForCausalLM.from_pretrained(folder)` then works without `trust_remote_code`.
"""
from __future__ import annotations

import os as _os
import sys as _sys

__version__ = "0.1.0"

# CPU threads that wait for work sleep instead of spinning. OpenMP's default lets each of
# PyTorch's threads spin for a while after every parallel operation; when another process wants a
# core (a browser, JupyterLab, a second run), the spinning threads take it and training slows
# down many times over (README, "Threads"). OpenMP reads the setting once, when torch loads it, so
# it is set here, before the first torch import: the command line and the lessons import this
# package first. A value the user set is kept. When torch was imported first, the setting comes
# too late, and training then defaults to one thread (train/env.py, default_threads).
if "OMP_WAIT_POLICY" not in _os.environ and "torch" not in _sys.modules:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

# name -> the submodule that defines it
_LAZY = {
    "MiniMindConfig": "config",
    "MiniMindForCausalLM": "model",
    "MiniMindModel": "model",
    "count_parameters": "model",
    "Profile": "profiles",
    "get_profile": "profiles",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["MiniMindConfig", "MiniMindForCausalLM", "MiniMindModel", "count_parameters", "Profile",
           "get_profile"]

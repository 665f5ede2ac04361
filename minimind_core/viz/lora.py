"""Pictures and widgets for LoRA (低秩适配, lesson 06).

    lora_targets(config, targets)                 the layers an adapter set covers: [(name, in, out)]
    lora_parameter_count(config, rank, targets)   adapter parameters, counted from the layer shapes
    rank_table(config, ranks, target_sets)        rows {targets, rank, params, percent} for every pair
    lora_params_figure(config, ranks, target_sets)   adapter size against the rank, one line per target set
    rank_explorer(config)                         the same number with a rank slider and a target menu
    delta_weight_figure(layer)                    a trained adapter's update B A * scale: heat map and singular values
    folder_size(path)                             bytes on disk of a file or folder
    cost_rows(...) / cost_table_html(rows)        full SFT against LoRA: trainable parameters, time, size on disk
    before_after_figure(metrics)                  bars of each metric before and after the adapter

The counts come from the model's own layer shapes (the model is built on the `meta` device, so
even the full-size model costs no memory) and the same layer choice as `minimind_core.lora`, so
they agree with `count_lora_parameters` on a real adapted model.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..lora import LoRALinear, target_modules
from ..model import count_parameters, meta_model
from .common import PngFigure, keep_initial_state, percent_bars

DEFAULT_RANKS = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_TARGET_SETS = {"MiniMind: q_proj, o_proj (square layers)": "minimind",
                       "q, k, v, o, gate, up, down": "all"}


def _config_of(config_or_model):
    return getattr(config_or_model, "config", config_or_model)


def lora_targets(config, targets="minimind") -> list[tuple[str, int, int]]:
    """(module name, in_features, out_features) of every layer `targets` picks (see lora.apply_lora)."""
    model = meta_model(_config_of(config))
    out = []
    for name in target_modules(model, targets):
        w = model.get_submodule(name).weight
        out.append((name, int(w.shape[1]), int(w.shape[0])))
    return out


def lora_parameter_count(config, rank: int, targets="minimind") -> int:
    """Adapter parameters for `rank` on the layers `targets` picks: sum of rank * (in + out)."""
    if int(rank) != rank or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank}")
    return sum(int(rank) * (i + o) for _, i, o in lora_targets(config, targets))


def base_parameter_count(config) -> int:
    """Parameters of the base model (tied embedding counted once)."""
    return count_parameters(meta_model(_config_of(config)))


def rank_table(config, ranks: Sequence[int] = DEFAULT_RANKS, target_sets: dict | None = None) -> list[dict]:
    """One row per (target set, rank): {"targets", "rank", "layers", "params", "percent"}."""
    target_sets = DEFAULT_TARGET_SETS if target_sets is None else target_sets
    base = base_parameter_count(config)
    rows = []
    for label, targets in target_sets.items():
        layers = lora_targets(config, targets)
        per_rank = sum(i + o for _, i, o in layers)
        for r in ranks:
            n = int(r) * per_rank
            rows.append({"targets": label, "rank": int(r), "layers": len(layers), "params": n,
                         "percent": 100.0 * n / base})
    return rows


def lora_params_figure(config, ranks: Sequence[int] = DEFAULT_RANKS, target_sets: dict | None = None,
                       highlight: tuple | None = ("minimind", 8), title: str | None = None) -> Figure:
    """Adapter parameters against the rank (log-log), one line per target set.

    The right axis reads the same numbers as a percentage of the base model. `highlight`
    = (targets, rank) marks one point with its exact count (MiniMind's rank-8 q/o adapter).
    """
    target_sets = DEFAULT_TARGET_SETS if target_sets is None else target_sets
    cfg = _config_of(config)
    rows = rank_table(cfg, ranks, target_sets)
    base = base_parameter_count(cfg)
    fig = PngFigure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    markers = ["o", "s", "^", "D", "v"]
    for k, label in enumerate(target_sets):
        sel = [r for r in rows if r["targets"] == label]
        ax.plot([r["rank"] for r in sel], [r["params"] for r in sel], marker=markers[k % len(markers)],
                label=f"{label} ({sel[0]['layers']} layers)")
    ax.axhline(base, ls="--", color="0.5", lw=1, label=f"whole model: {base:,}")
    if highlight is not None:
        h_targets, h_rank = highlight
        n = lora_parameter_count(cfg, h_rank, h_targets)
        ax.plot([h_rank], [n], "o", ms=12, mfc="none", mec="tab:red", mew=2)
        ax.annotate(f"rank {h_rank}, {h_targets}: {n:,} ({100 * n / base:.2f}%)", (h_rank, n),
                    xytext=(12, -18), textcoords="offset points", color="tab:red", fontsize=9)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(ranks))
    ax.set_xticklabels([str(r) for r in ranks])
    ax.set_xlabel("rank r")
    ax.set_ylabel("trainable adapter parameters")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    sec = ax.secondary_yaxis("right", functions=(lambda n: 100 * np.asarray(n) / base,
                                                 lambda p: np.asarray(p) * base / 100))
    sec.set_ylabel("% of the base model")
    fig.suptitle(title or f"LoRA size by rank (base model {base / 1e6:.2f}M parameters, "
                          f"hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers)", fontsize=11)
    return fig


def rank_summary(config, rank: int, targets="minimind") -> str:
    """One line: adapter layers, the count as a sum, and the share of the base model."""
    layers = lora_targets(config, targets)
    n = lora_parameter_count(config, rank, targets)
    base = base_parameter_count(config)
    shapes = sorted({(i, o) for _, i, o in layers})
    per = " + ".join(f"{sum(1 for _, a, b in layers if (a, b) == s)} x {rank} x ({s[0]} + {s[1]})" for s in shapes)
    return (f"rank {rank} on {len(layers)} layers: {per} = {n:,} parameters, "
            f"{100 * n / base:.2f}% of {base:,}")


def rank_explorer(config, ranks: Sequence[int] = DEFAULT_RANKS, target_sets: dict | None = None):
    """A rank slider and a target-set menu over `rank_summary` (returns the widget box).

    The box has `.rank`, `.targets` and `.summary` (an HTML widget) as attributes; setting the
    first two updates the third.
    """
    import ipywidgets as widgets

    target_sets = DEFAULT_TARGET_SETS if target_sets is None else target_sets
    cfg = _config_of(config)
    rank = widgets.SelectionSlider(options=[int(r) for r in ranks], value=8 if 8 in ranks else int(ranks[0]),
                                   description="rank")
    targets = widgets.Dropdown(options=list(target_sets.items()), description="targets",
                               layout=widgets.Layout(width="max-content"))   # the longest name in full
    summary = widgets.HTML()

    def update(_=None):
        summary.value = f"<code>{html.escape(rank_summary(cfg, rank.value, targets.value))}</code>"

    rank.observe(update, names="value")
    targets.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox([rank, targets]), summary])
    box.rank, box.targets, box.summary = rank, targets, summary
    return keep_initial_state(box, html=summary.value)


# --------------------------------------------------------------------------------------------
# what an adapter learned
# --------------------------------------------------------------------------------------------

def delta_weight_figure(layer, name: str = "", max_cells: int = 64) -> Figure:
    """A LoRALinear's update: the top-left corner of W, of B A * scale, and the singular values
    of B A * scale (at most `rank` of them are non-zero: the update is low-rank by construction)."""
    if not isinstance(layer, LoRALinear):
        raise TypeError(f"expected a LoRALinear layer, got {type(layer).__name__}")
    with torch.no_grad():
        delta = layer.delta_weight().detach().float().cpu()
        w = layer.weight.detach().float().cpu()
        if layer.merged:
            w = w - delta
    sv = torch.linalg.svdvals(delta).numpy()
    fig = PngFigure(figsize=(12, 3.8), layout="constrained")
    ax_w, ax_d, ax_s = fig.subplots(1, 3, width_ratios=[1, 1, 1.3])
    corner = (slice(0, max_cells), slice(0, max_cells))
    for ax, m, label in ((ax_w, w[corner], "base weight W"), (ax_d, delta[corner], "update B A * scale")):
        lim = float(m.abs().max()) or 1.0
        im = ax.imshow(m.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{label}\n(top-left {m.shape[0]} x {m.shape[1]}, |max| {lim:.3g})", fontsize=9)
        ax.set_xlabel("input dim")
        ax.set_ylabel("output dim")
        fig.colorbar(im, ax=ax, shrink=0.8)
    k = np.arange(1, len(sv) + 1)
    ax_s.semilogy(k, np.maximum(sv, 1e-12), "o-", ms=3)
    ax_s.axvline(layer.rank + 0.5, color="tab:red", ls="--", lw=1, label=f"rank r = {layer.rank}")
    ax_s.set_xlabel("singular value index")
    ax_s.set_ylabel("singular value (log)")
    ax_s.set_ylim(bottom=max(1e-12, float(sv.max()) * 1e-9) if sv.max() > 0 else 1e-12)
    ax_s.legend(fontsize=8)
    ax_s.grid(alpha=0.3)
    ax_s.set_title("singular values of the update", fontsize=9)
    ratio = float(np.linalg.norm(delta.numpy()) / max(np.linalg.norm(w.numpy()), 1e-12))
    fig.suptitle(f"{name or 'LoRA layer'}: {layer.out_features} x {layer.in_features}, "
                 f"||update|| / ||W|| = {ratio:.3g}", fontsize=11)
    return fig


# --------------------------------------------------------------------------------------------
# the bill: full SFT against LoRA
# --------------------------------------------------------------------------------------------

def folder_size(path) -> int:
    """Bytes of a file, or of every file under a folder."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such file or folder")
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def weights_size(checkpoint_dir) -> int:
    """Bytes of the weight files (*.safetensors) in a checkpoint folder: what a LoRA saves instead of the model."""
    d = Path(checkpoint_dir)
    files = list(d.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{d}: no .safetensors weight file")
    return sum(f.stat().st_size for f in files)


def _fmt_bytes(n: float) -> str:
    for unit, div in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


def cost_rows(runs: dict) -> list[dict]:
    """Rows of the cost table from {label: dict(trainable=int, total=int, steps=int, seconds=float,
    weights_bytes=int)}; adds the derived columns (percent trainable, seconds per step)."""
    rows = []
    for label, r in runs.items():
        missing = {"trainable", "total", "steps", "seconds", "weights_bytes"} - set(r)
        if missing:
            raise ValueError(f"cost_rows: run {label!r} lacks {', '.join(sorted(missing))}")
        rows.append({"run": label, **r, "percent": 100.0 * r["trainable"] / max(r["total"], 1),
                     "s_per_step": r["seconds"] / max(r["steps"], 1)})
    return rows


def cost_table_html(rows: Sequence[dict]) -> str:
    """The cost rows as an HTML table, with a last column relative to the first row."""
    head = ["run", "trainable parameters", "of the model", "steps", "time", "s / step", "weights on disk",
            "size vs first"]
    first = rows[0]["weights_bytes"] if rows else 1
    body = []
    for r in rows:
        cells = [html.escape(str(r["run"])), f"{r['trainable']:,}", f"{r['percent']:.2f}%", str(r["steps"]),
                 f"{r['seconds']:.1f} s", f"{r['s_per_step']:.3f}", _fmt_bytes(r["weights_bytes"]),
                 f"{r['weights_bytes'] / max(first, 1):.3f}x"]
        body.append("<tr>" + "".join(f"<td style='text-align:right'>{c}</td>" for c in cells) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def before_after_figure(metrics: dict, labels: tuple = ("before LoRA", "after LoRA"),
                        title: str | None = None) -> Figure:
    """Pairs of bars, one pair per metric: {metric name: (before, after)} as fractions in [0, 1]."""
    if not metrics:
        raise ValueError("before_after_figure needs at least one metric")
    names = list(metrics)
    fig = PngFigure(figsize=(1.9 * len(names) + 3, 3.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    for k, (label, color) in enumerate(zip(labels, ("tab:gray", "tab:green"))):
        percent_bars(ax, x, [float(metrics[n][k]) for n in names], k, label, color, fontsize=9)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylim(0, 1.3)                     # room above the 100% labels for the legend
    ax.set_ylabel("fraction of questions")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    fig.suptitle(title or "what the adapter changed, and what it kept", fontsize=11)
    return fig


__all__ = ["DEFAULT_RANKS", "DEFAULT_TARGET_SETS", "lora_targets", "lora_parameter_count", "base_parameter_count",
           "rank_table", "lora_params_figure", "rank_summary", "rank_explorer", "delta_weight_figure",
           "folder_size", "weights_size", "cost_rows", "cost_table_html", "before_after_figure"]

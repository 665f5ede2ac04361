"""Pictures for knowledge distillation (知识蒸馏, lesson 09).

    soft_labels_figure(probs, labels)    a teacher's next-token distribution at a few temperatures
    val_curves_figure(runs)               validation loss by step of several runs (with and without a teacher)
    seeds_figure(results)                 one measure per seed and run, as dots with the mean as a bar
    thinking_figure(results)              two-hop accuracy of models that think first and models that do not
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .common import PngFigure, draw_chance

_COLORS = ("tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:purple")


def soft_labels_figure(probs: Mapping[float, Sequence[float]], labels: Sequence[str], title: str = "") -> Figure:
    """probs: {temperature: the probabilities of the tokens `labels`}, one bar group per token."""
    if not probs:
        raise ValueError("soft_labels_figure needs at least one temperature")
    temps = list(probs)
    fig = PngFigure(figsize=(max(6.0, 0.75 * len(labels) + 2), 3.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(labels))
    width = 0.8 / len(temps)
    for k, t in enumerate(temps):
        ax.bar(x + (k - (len(temps) - 1) / 2) * width, [float(p) for p in probs[t]], width,
               label=f"T = {t:g}", color=_COLORS[(k + 1) % len(_COLORS)])
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8, rotation=30, ha="right")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "the teacher's next token, softened by the temperature", fontsize=10)
    return fig


def val_curves_figure(runs: Mapping[str, Sequence[Mapping]], title: str = "") -> Figure:
    """runs: {label: a run's metrics rows}; the rows that carry val_loss are drawn by step."""
    fig = PngFigure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.subplots()
    for k, (label, rows) in enumerate(runs.items()):
        pts = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        if not pts:
            raise ValueError(f"val_curves_figure: run {label!r} logged no val_loss (set val_fraction)")
        ax.plot(*zip(*pts), marker="o", label=label, color=_COLORS[(k + 1) % len(_COLORS)])
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (held-out conversations)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "the same student, with and without a teacher", fontsize=10)
    return fig


def seeds_figure(results: Mapping[str, Mapping[str, Sequence[float]]], title: str = "") -> Figure:
    """results: {measure: {run label: one value per seed}}; one panel per measure, a bar (the mean)
    and dots (the seeds) per run, so a gap that holds on every seed is visible as such."""
    measures = list(results)
    if not measures:
        raise ValueError("seeds_figure needs at least one measure")
    fig = PngFigure(figsize=(3.6 * len(measures) + 0.5, 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(measures)))
    for ax, measure in zip(axes, measures):
        runs = results[measure]
        for k, (label, values) in enumerate(runs.items()):
            v = np.asarray(values, dtype=float)
            ax.bar(k, v.mean(), 0.6, color=_COLORS[(k + 1) % len(_COLORS)], alpha=0.6)
            ax.scatter(np.full(len(v), k), v, color="black", s=14, zorder=3)
            ax.text(k, v.mean(), f"{v.mean():.3f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(runs)))
        ax.set_xticklabels(list(runs), fontsize=8)
        ax.set_title(measure, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or "every seed (dots) and their mean (bars)", fontsize=11)
    return fig


def thinking_figure(results: Mapping[str, float], title: str = "") -> Figure:
    """results: {model label: two-hop accuracy in [0, 1]}, one bar each."""
    names = list(results)
    fig = PngFigure(figsize=(1.6 * len(names) + 2.5, 3.2), layout="constrained")
    ax = fig.subplots()
    vals = [float(results[n]) for n in names]
    bars = ax.bar(range(len(names)), vals, 0.55, color=[_COLORS[(k + 1) % len(_COLORS)] for k in range(len(names))])
    for b, v in zip(bars, vals):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.02, f"{v:.0%}", ha="center", va="bottom", fontsize=9)
    draw_chance(ax, 0.2, "guessing\n(1 of 5)")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("two-hop accuracy (held-out people)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "which country does X live in?", fontsize=10)
    return fig


__all__ = ["soft_labels_figure", "val_curves_figure", "seeds_figure", "thinking_figure"]

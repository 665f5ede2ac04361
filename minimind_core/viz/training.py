"""Pictures and widgets for training runs (lessons 04-06).

    training_figure(rows, total_steps, base_lr, warmup, baselines)   loss (and val_loss) and learning rate
    LiveTrainingPlot(...)                 a train() callback that redraws that figure while the run goes on
    metrics_figure(run_dir_or_rows)       a finished (or running) run's metrics file: loss, lr, grad norm, tokens/s
    lr_schedule_figure(total, base_lr, warmup)   MiniMind's cosine schedule, with its start, end and floor marked
    lr_explorer(total, base_lr, warmup)   the same with sliders
    padding_figure(padded_real, packed_ids, eos_id, lengths, seq_len)   padded vs packed batches, token by token
    padding_fraction(real_mask)           share of a batch's positions that are padding

The live plot redraws at most once every `min_interval` seconds (drawing a figure costs more
than a training step of the small profiles) and always once at the end. It shows the figure
through an IPython display handle, which is updated in place: in JupyterLab, and also in a
notebook executed headless (`jupyter execute`, nbval), where the last picture is the one kept.
Launching a multi-GPU run from a notebook (torchrun with its output streamed) is in launch.py.
"""
from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from .common import FULL_LABEL, PngFigure, keep_initial_state, load_widgets, show


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

def _png(fig: Figure, dpi: int = 100):
    """The figure as an IPython Image (works whatever matplotlib backend the kernel has)."""
    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return Image(data=buf.getvalue(), format="png")


def lr_curve(total: int, base_lr: float, warmup: int = 0) -> np.ndarray:
    """The learning rate of every optimizer step 0..total-1 (minimind_core.train.lr_at)."""
    from ..train import lr_at

    if total < 1:
        raise ValueError(f"total must be at least 1, got {total}")
    return np.array([lr_at(s, total, base_lr, warmup) for s in range(total)])


def _human(n: float) -> str:
    n = float(n)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


def _col(rows: Sequence[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key) is not None else np.nan for r in rows])


VAL_COLOR = "tab:green"


def _draw_val(ax, rows: Sequence[dict], x: np.ndarray) -> None:
    """The rows' val_loss (logged every few rows only) as dots joined by a line, beside the training loss."""
    val = _col(rows, "val_loss")
    has = ~np.isnan(val)
    if has.any():
        ax.plot(x[has], val[has], "o-", color=VAL_COLOR, lw=1.4, ms=4,
                label=f"validation loss (held out): {val[has][-1]:.3f}")


# --------------------------------------------------------------------------------------------
# loss and learning rate of a run
# --------------------------------------------------------------------------------------------

def training_figure(rows: Sequence[dict], total_steps: int | None = None, base_lr: float | None = None,
                    warmup: int = 0, baselines: dict | None = None, title: str | None = None) -> Figure:
    """Loss (left) and learning rate (right) against the optimizer step.

    rows:        logged rows of train() (dicts with step, loss, lr; tokens, tokens_per_s,
                 elapsed_s are used for the title when present)
    total_steps: the run's length: fixes the x axis, and with base_lr draws the planned schedule
    baselines:   {label: loss} drawn as horizontal dashed lines, e.g. {"uniform ln V": 7.62}
    """
    fig = PngFigure(figsize=(11, 3.8), layout="constrained")
    ax_loss, ax_lr = fig.subplots(1, 2, width_ratios=[1.6, 1])
    steps, loss, lr = _col(rows, "step"), _col(rows, "loss"), _col(rows, "lr")

    colors = ["tab:gray", "tab:orange", "tab:purple", "tab:brown"]
    for i, (label, value) in enumerate((baselines or {}).items()):
        ax_loss.axhline(value, ls="--", lw=1, color=colors[i % len(colors)], label=f"{label}: {value:.2f}")
    if len(rows):
        ax_loss.plot(steps, loss, "-", color="tab:blue", lw=1.6, marker="." if len(rows) < 40 else None,
                     label="training loss")
    _draw_val(ax_loss, rows, steps)
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("cross-entropy (nats / token)")
    ax_loss.grid(alpha=0.3)
    top = [v for v in (baselines or {}).values()] + ([np.nanmax(loss)] if len(rows) else [])
    if top:
        ax_loss.set_ylim(0, max(top) * 1.08)
    if ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(loc="upper right", fontsize=8)
    ax_loss.set_title("loss", fontsize=10)

    if total_steps and base_lr:
        # a logged row's "step" counts finished updates: row k used the rate of update k - 1
        ax_lr.plot(np.arange(1, total_steps + 1), lr_curve(total_steps, base_lr, warmup), "--", color="0.6", lw=1,
                   label="planned schedule")
    if len(rows):
        ax_lr.plot(steps, lr, "-", color="tab:red", lw=1.6, marker="." if len(rows) < 40 else None,
                   label="logged lr")
    ax_lr.set_xlabel("optimizer step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax_lr.grid(alpha=0.3)
    ax_lr.set_ylim(bottom=0)
    if ax_lr.get_legend_handles_labels()[0]:
        ax_lr.legend(loc="upper right", fontsize=8)
    ax_lr.set_title("learning rate", fontsize=10)
    if total_steps:
        for ax in (ax_loss, ax_lr):
            ax.set_xlim(0, total_steps)

    if title is None and len(rows):
        last = rows[-1]
        parts = [f"step {int(last['step'])}" + (f"/{total_steps}" if total_steps else ""),
                 f"loss {float(last['loss']):.3f}"]
        val = [r["val_loss"] for r in rows if r.get("val_loss") is not None]
        if val:
            parts.append(f"val {float(val[-1]):.3f}")
        if last.get("tokens") is not None:
            parts.append(f"{_human(last['tokens'])} tokens")
        if last.get("tokens_per_s") is not None:
            parts.append(f"{_human(last['tokens_per_s'])} tokens/s")
        if last.get("elapsed_s") is not None:
            parts.append(f"{float(last['elapsed_s']) / 60:.1f} min")
        title = " | ".join(parts)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


class LiveTrainingPlot:
    """A train() callback that draws `training_figure` while the run goes on.

        plot = LiveTrainingPlot(total_steps=600, base_lr=2e-3, baselines={"unigram": 5.9})
        train("pretrain", callbacks=[plot])

    train() calls `on_log(row)` at every logged step (from the process that logs: rank 0) and
    `on_end(result)` once at the end. Redraws happen at most every `min_interval` seconds, and
    always at the end, so drawing never slows a run down noticeably. With display=False nothing
    is shown (the figure is still built: `.figure`), which is how the tests drive it.
    `update_from_metrics(run_dir)` reads a metrics file instead, for a run in another process
    (torchrun).
    """

    def __init__(self, total_steps: int | None = None, base_lr: float | None = None, warmup: int = 0,
                 baselines: dict | None = None, min_interval: float = 2.0, display: bool = True,
                 title: str | None = None):
        self.total_steps, self.base_lr, self.warmup = total_steps, base_lr, warmup
        self.baselines = dict(baselines or {})
        self.min_interval, self.display, self.title = float(min_interval), display, title
        self.rows: list[dict] = []
        self.figure: Figure | None = None
        self.draws = 0
        self._last_draw = -math.inf
        self._handle = None

    # the callback protocol of minimind_core.train.train
    def on_log(self, row: dict) -> None:
        self.rows.append(dict(row))
        if time.monotonic() - self._last_draw >= self.min_interval:
            self.draw()

    __call__ = on_log

    def on_end(self, result=None) -> None:
        if self.rows:
            self.draw()

    def update_from_metrics(self, source, force: bool = False) -> bool:
        """Take the rows of a metrics file (or run folder); redraw if there are new ones.

        Returns True when it redrew. Throttled like on_log unless force=True.
        """
        from ..checkpoint import read_metrics

        rows = read_metrics(source)
        if len(rows) == len(self.rows) and not force:
            return False
        self.rows = rows
        if force or time.monotonic() - self._last_draw >= self.min_interval:
            self.draw()
            return True
        return False

    def draw(self) -> Figure:
        self.figure = training_figure(self.rows, self.total_steps, self.base_lr, self.warmup, self.baselines,
                                      self.title)
        self.draws += 1
        self._last_draw = time.monotonic()
        if self.display:
            self._display(self.figure)
        return self.figure

    def _display(self, fig: Figure) -> None:
        from IPython.display import display

        img = _png(fig)
        if self._handle is None:
            self._handle = display(img, display_id=True)
        else:
            self._handle.update(img)


def _rows_of(source) -> list[dict]:
    if isinstance(source, (str, Path)):
        from ..checkpoint import read_metrics

        rows = read_metrics(source)
        if not rows:
            path = Path(source)
            raise FileNotFoundError(f"{path}: no metrics rows found (expected a run folder with metrics.jsonl "
                                    "or a metrics.jsonl file)")
        return rows
    return list(source)


def metrics_figure(source, smooth: int = 1, baselines: dict | None = None) -> Figure:
    """Four panels of a run's metrics: loss against tokens seen, learning rate, gradient norm
    (before clipping at 1.0) and throughput.

    source: a run folder, a metrics.jsonl file, or a list of rows.
    smooth: moving-average window (in logged rows) for the loss; the raw loss stays visible.
    """
    rows = _rows_of(source)
    val = [r["val_loss"] for r in rows if r.get("val_loss") is not None]
    fig = PngFigure(figsize=(11, 6.4), layout="constrained")
    (a, b), (c, d) = fig.subplots(2, 2)
    steps = _col(rows, "step")
    x_tok = _col(rows, "tokens") if all("tokens" in r for r in rows) else steps
    loss = _col(rows, "loss")
    for i, (label, value) in enumerate((baselines or {}).items()):
        a.axhline(value, ls="--", lw=1, color=["tab:gray", "tab:orange", "tab:purple"][i % 3],
                  label=f"{label}: {value:.2f}")
    a.plot(x_tok, loss, color="tab:blue", alpha=0.35 if smooth > 1 else 1.0, lw=1, label="loss")
    if smooth > 1 and len(loss) >= smooth:
        kernel = np.ones(smooth) / smooth
        a.plot(x_tok[smooth - 1:], np.convolve(loss, kernel, mode="valid"), color="tab:blue", lw=2,
               label=f"mean of {smooth}")
    _draw_val(a, rows, x_tok)
    a.set_xlabel("tokens seen" if x_tok is not steps else "optimizer step")
    a.set_ylabel("loss")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    a.set_title("training and validation loss" if val else "training loss", fontsize=10)
    b.plot(steps, _col(rows, "lr"), color="tab:red")
    b.set_title("learning rate", fontsize=10)
    b.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    c.plot(steps, _col(rows, "grad_norm"), color="tab:green")
    c.axhline(1.0, ls="--", color="0.5", lw=1, label="clipped to 1.0 above this")
    c.legend(fontsize=8)
    c.set_title("gradient norm (before clipping)", fontsize=10)
    d.plot(steps, _col(rows, "tokens_per_s"), color="tab:purple")
    d.set_title("throughput (tokens/s)", fontsize=10)
    d.set_ylim(bottom=0)
    for ax in (b, c, d):
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    last = rows[-1]
    val_text = f", validation loss {float(val[-1]):.3f}" if val else ""
    fig.suptitle(f"{len(rows)} logged steps, last step {int(last['step'])}: loss {float(last['loss']):.3f}{val_text}",
                 fontsize=11)
    return fig


# --------------------------------------------------------------------------------------------
# the learning-rate schedule
# --------------------------------------------------------------------------------------------

def lr_schedule_figure(total: int, base_lr: float, warmup: int = 0, show_steps: Iterable[int] = ()) -> Figure:
    """MiniMind's schedule lr(t) = lr * (0.1 + 0.45 * (1 + cos(pi t / T))) over `total` steps.

    Marks the start (lr), the floor (lr / 10) and, with warmup > 0, the end of the warmup; the
    schedule without warmup is drawn faintly for comparison. `show_steps` get a dot and a label.
    """
    curve = lr_curve(total, base_lr, warmup)
    fig = PngFigure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(total)
    if warmup > 0:
        ax.plot(x, lr_curve(total, base_lr, 0), color="0.7", lw=1, label="no warmup")
        ax.axvline(warmup, color="tab:green", ls=":", lw=1, label=f"end of warmup (step {warmup})")
    ax.plot(x, curve, color="tab:red", lw=2, label="lr(t)" + (f" with {warmup} warmup steps" if warmup else ""))
    ax.axhline(base_lr, color="0.4", ls="--", lw=1, label=f"peak lr = {base_lr:.3g}")
    ax.axhline(base_lr / 10, color="0.4", ls="-.", lw=1, label=f"floor lr/10 = {base_lr / 10:.3g}")
    for s in show_steps:
        if 0 <= s < total:
            ax.plot([s], [curve[s]], "o", color="black", ms=4)
            ax.annotate(f"t={s}: {curve[s]:.3g}", (s, curve[s]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlim(0, total)
    ax.set_ylim(0, base_lr * 1.12)
    ax.set_xlabel("optimizer step t")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(f"cosine schedule over T = {total:,} steps: starts at {curve[0]:.3g}, ends at {curve[-1]:.3g}",
                 fontsize=10)
    return fig


def lr_explorer(total: int = 1000, base_lr: float = 5e-4, warmup: int = 0, max_total: int | None = None):
    """Sliders for the peak learning rate, the schedule length T and the warmup.

    Returns a VBox with `.lr`, `.total`, `.warmup` (the sliders), `.figure` (the latest figure)
    and `.update()` (redraws; called whenever a slider moves). The warmup slider's maximum
    follows T (at most half of it).
    """
    widgets = load_widgets()
    max_total = max_total or max(2 * total, 100)
    lr = widgets.FloatLogSlider(value=base_lr, base=10, min=-6, max=-1, step=0.1, description="peak lr",
                                readout_format=".1e", continuous_update=False, style=FULL_LABEL)
    t = widgets.IntSlider(value=total, min=10, max=max_total, step=max(1, max_total // 200), description="T (steps)",
                          continuous_update=False, style=FULL_LABEL)
    w = widgets.IntSlider(value=warmup, min=0, max=max(0, total // 2), description="warmup", continuous_update=False,
                          style=FULL_LABEL)
    out = widgets.Output()
    box = widgets.VBox([widgets.HBox([lr, t, w]), out])
    box.lr, box.total, box.warmup, box.out, box.figure = lr, t, w, out, None

    def update(change=None):
        w.max = max(0, t.value // 2)  # clamps w.value too (which calls update again: harmless)
        box.figure = lr_schedule_figure(t.value, lr.value, min(w.value, t.value // 2),
                                        show_steps=[t.value // 2])
        show(out, box.figure)
        return box.figure

    for s in (lr, t, w):
        s.observe(update, names="value")
    box.update = update
    update()
    return keep_initial_state(box, figure=box.figure)


# --------------------------------------------------------------------------------------------
# padding vs packing
# --------------------------------------------------------------------------------------------

def padding_fraction(real) -> float:
    """The share of positions that are padding in a batch, given its real-token mask [B, T]."""
    real = np.asarray(real, dtype=bool)
    if real.size == 0:
        raise ValueError("empty batch")
    return float(1.0 - real.mean())


def _document_index(ids: np.ndarray, eos_id: int) -> np.ndarray:
    """For each position of packed rows, which document it belongs to (a new one after each eos)."""
    flat = ids.reshape(-1)
    starts = np.concatenate([[0], (flat[:-1] == eos_id).astype(int)])
    return np.cumsum(starts).reshape(ids.shape)


def padding_figure(padded_real, packed_ids, eos_id: int = 2, lengths: Sequence[int] | None = None,
                   seq_len: int | None = None) -> Figure:
    """Padded batches (MiniMind) against packed batches, position by position.

    padded_real: bool [B, T], True where a padded batch holds a real token (False: padding)
    packed_ids:  int [B, T], token ids of packed blocks; documents are told apart at `eos_id`
    lengths:     optional token length of every document, drawn as a histogram with `seq_len`
    """
    padded_real = np.asarray(padded_real, dtype=bool)
    packed_ids = np.asarray(packed_ids)
    if padded_real.ndim != 2 or packed_ids.ndim != 2:
        raise ValueError(f"expected two [batch, seq] arrays, got shapes {padded_real.shape} and {packed_ids.shape}")
    panels = 3 if lengths is not None else 2
    fig = PngFigure(figsize=(4.2 * panels + 1, 4.2), layout="constrained")
    axes = fig.subplots(1, panels)

    pad_frac = padding_fraction(padded_real)
    a = axes[0]
    a.imshow(padded_real.astype(int), aspect="auto", interpolation="nearest",
             cmap=ListedColormap(["#d9d9d9", "tab:blue"]), vmin=0, vmax=1)
    a.set_title(f"padded (one document per row)\n{100 * pad_frac:.0f}% of positions are padding", fontsize=10)
    a.set_xlabel("position")
    a.set_ylabel("sequence in the batch")

    doc = _document_index(packed_ids, eos_id) % 2
    b = axes[1]
    b.imshow(doc, aspect="auto", interpolation="nearest", cmap=ListedColormap(["tab:blue", "#08306b"]), vmin=0, vmax=1)
    n_docs = len(np.unique(_document_index(packed_ids, eos_id)))
    b.set_title(f"packed (documents back to back)\n0% padding, {n_docs} documents in the picture", fontsize=10)
    b.set_xlabel("position")
    b.set_ylabel("block in the batch")

    if lengths is not None:
        c = axes[2]
        lengths = np.asarray(lengths)
        hi = max(int(lengths.max()), seq_len or 0)
        c.hist(lengths, bins=np.linspace(0, hi * 1.02, 40), color="tab:blue", alpha=0.8)
        if seq_len:
            c.axvline(seq_len, color="tab:red", ls="--", label=f"seq_len = {seq_len}")
            c.legend(fontsize=8)
        c.set_xlabel("document length (tokens)")
        c.set_ylabel("documents")
        c.set_title(f"{len(lengths):,} documents, median {int(np.median(lengths))} tokens", fontsize=10)
    fig.suptitle("light grey = padding (computed, then thrown away); blue shades = real tokens", fontsize=10)
    return fig


__all__ = ["training_figure", "LiveTrainingPlot", "metrics_figure", "lr_curve", "lr_schedule_figure", "lr_explorer",
           "padding_fraction", "padding_figure"]

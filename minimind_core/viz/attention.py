"""Pictures and widgets for lesson 03: rotary position embedding and attention maps.

    rope_rotation_figure(position, pair)      one dimension pair rotated by its position + the cos table
    rope_explorer()                            the same with sliders (position, dimension pair)
    rope_wavelength_figure(head_dim, theta)    wavelength of every dimension pair against the context length
    score_matrix_figure(scores)                a [positions x positions] matrix as a heatmap
    attention_weights(model, input_ids)        every layer's attention probabilities [layers, batch, heads, q, k]
    attention_heatmap(weights, labels)         one head's attention map with token labels
    attention_explorer(model, tokenizer)       a text box + layer/head sliders -> attention heatmap

The probabilities come from the model itself: `model(ids, output_attentions=True).attentions`.
Token labels are `minimind_core.tokenizer.token_labels`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..model import rope_tables
from ..tokenizer import token_labels
from .common import FULL_LABEL, PngFigure, drawable, font_families, keep_initial_state, load_widgets, show


# --------------------------------------------------------------------------------------------
# RoPE pictures
# --------------------------------------------------------------------------------------------

def rope_rotation_figure(position: int, pair: int, head_dim: int = 64, theta: float = 1e6,
                         max_positions: int = 128) -> Figure:
    """Left: the 2-D rotation of dimension pair `pair` (dims pair and pair + head_dim/2 in the
    rotate-half layout) at `position`, with the path of positions 0..position. Right: the cos table
    [positions, head_dim] with the chosen row and the pair's two columns outlined."""
    half = head_dim // 2
    if not 0 <= pair < half:
        raise ValueError(f"pair must be in 0..{half - 1} for head_dim {head_dim}, got {pair}")
    if not 0 <= position < max_positions:
        raise ValueError(f"position must be in 0..{max_positions - 1}, got {position}")
    cos, sin = rope_tables(head_dim, max_positions, theta)
    freq = theta ** (-2 * pair / head_dim)
    angle = position * freq

    fig = PngFigure(figsize=(11, 4.6), layout="constrained")
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.6])

    # (x_i, x_{i+half}) = (1, 0) rotated by the angle of each position: rotate-half's pair
    ts = np.arange(position + 1)
    ax.plot(np.cos(ts * freq), np.sin(ts * freq), ".", color="0.75", ms=4, label="positions 0..m")
    circle = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(circle), np.sin(circle), color="0.85", lw=1)
    ax.annotate("", xy=(1, 0), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color="tab:blue", lw=2))
    ax.annotate("", xy=(float(cos[position, pair]), float(sin[position, pair])), xytext=(0, 0),
                arrowprops=dict(arrowstyle="->", color="tab:red", lw=2))
    ax.plot([], [], color="tab:blue", label="position 0")
    ax.plot([], [], color="tab:red", label=f"position {position}")
    ax.set_xlim(-1.25, 1.25)
    ax.set_ylim(-1.25, 1.25)
    ax.set_aspect("equal")
    ax.set_xlabel(f"dim {pair}")
    ax.set_ylabel(f"dim {pair + half}")
    wavelength = 2 * math.pi / freq
    ax.set_title(f"pair {pair}: angle m*freq = {angle:.3g} rad\n"
                 f"freq = {freq:.3g} rad/token, wavelength = {wavelength:.3g} tokens", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)

    im = ax2.imshow(cos.numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1, interpolation="nearest")
    ax2.add_patch(Rectangle((-0.5, position - 0.5), head_dim, 1, fill=False, ec="black", lw=2))
    for col in (pair, pair + half):
        ax2.add_patch(Rectangle((col - 0.5, -0.5), 1, max_positions, fill=False, ec="lime", lw=1.8))
    ax2.set_xlabel("dimension of the head (both halves share frequency i)")
    ax2.set_ylabel("position m")
    ax2.set_title(f"cos table [{max_positions} positions x {head_dim} dims], theta = {theta:g}\n"
                  f"black: row of position {position}; green: the columns of pair {pair}", fontsize=10)
    fig.colorbar(im, ax=ax2, shrink=0.8, label="cos(m * freq_i)")
    return fig


def rope_wavelength_figure(head_dim: int = 64, theta: float = 1e6,
                           context_lengths: dict | None = None) -> Figure:
    """Wavelength 2*pi/freq_i (tokens per full turn) of every dimension pair, log scale, with
    horizontal lines at the given context lengths ({label: tokens})."""
    pairs = np.arange(head_dim // 2)
    freq = theta ** (-2.0 * pairs / head_dim)
    wavelength = 2 * np.pi / freq
    fig = PngFigure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    ax.semilogy(pairs, wavelength, "o-", ms=4, label=f"wavelength (theta = {theta:g})")
    colors = ["tab:orange", "tab:green", "tab:red", "tab:purple"]
    for (label, n), c in zip((context_lengths or {}).items(), colors):
        ax.axhline(n, color=c, ls="--", lw=1, label=f"{label}: {n} tokens")
    ax.set_xlabel(f"dimension pair i (of {head_dim // 2})")
    ax.set_ylabel("tokens per full turn (log scale)")
    ax.set_title(f"RoPE frequency spectrum, head_dim {head_dim}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def score_matrix_figure(scores, title: str = "score(q at m, k at n)", xlabel: str = "key position n",
                        ylabel: str = "query position m") -> Figure:
    """A square matrix (e.g. q.k scores over query and key positions) as a heatmap."""
    s = torch.as_tensor(scores).detach().float().cpu().numpy()
    fig = PngFigure(figsize=(5.2, 4.4), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(s, cmap="viridis", interpolation="nearest")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.85)
    return fig


def rope_explorer(head_dim: int = 64, theta: float = 1e6, max_positions: int = 128):
    """Sliders for the position and the dimension pair; the figure is `rope_rotation_figure`.

    Returns a VBox with `.position`, `.pair` (the sliders), `.figure` (the latest figure) and
    `.update()` (redraws; called whenever a slider moves)."""
    widgets = load_widgets()
    position = widgets.IntSlider(value=min(10, max_positions - 1), min=0, max=max_positions - 1,
                                 description="position m", continuous_update=False,
                                 style=FULL_LABEL)
    pair = widgets.IntSlider(value=0, min=0, max=head_dim // 2 - 1, description="pair i",
                             continuous_update=False, style=FULL_LABEL)
    out = widgets.Output()
    box = widgets.VBox([widgets.HBox([position, pair]), out])
    box.position, box.pair, box.out, box.figure = position, pair, out, None

    def update(change=None):
        box.figure = rope_rotation_figure(position.value, pair.value, head_dim, theta, max_positions)
        show(out, box.figure)
        return box.figure

    position.observe(update, names="value")
    pair.observe(update, names="value")
    box.update = update
    update()
    return keep_initial_state(box, figure=box.figure)


# --------------------------------------------------------------------------------------------
# Attention maps of a model
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def attention_weights(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The attention probabilities of every layer and head: [layers, batch, heads, q_len, k_len].

    Runs the model once in eval mode with output_attentions=True: each layer then computes its
    softmax(q k^T / sqrt(d)) explicitly and returns it (the usual path, SDPA, keeps no weights).
    """
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    if attention_mask is not None:
        attention_mask = attention_mask.to(device)
    was_training = model.training
    model.eval()
    try:
        out = model(input_ids, attention_mask=attention_mask, output_attentions=True)
    finally:
        model.train(was_training)
    return torch.stack(out.attentions).cpu()


def attention_heatmap(weights, labels: list[str] | None = None, title: str = "") -> Figure:
    """One head's attention map: rows are queries, columns keys, each row sums to 1.

    Tick labels are `i:label`; where no installed font can draw a label (Chinese without a CJK
    font) the tick shows only the index `i` (the widget prints the full labels as text)."""
    w = torch.as_tensor(weights).detach().float().cpu()
    if w.dim() != 2 or w.shape[0] > w.shape[1]:
        raise ValueError(f"expected a [queries, keys] matrix, got shape {tuple(w.shape)}")
    n_q, n_k = w.shape
    families = font_families()
    size = max(4.5, min(12.0, 0.26 * n_k + 2.5))
    fig = PngFigure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(w.numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    if labels is not None:
        if len(labels) != n_k:
            raise ValueError(f"{len(labels)} labels for {n_k} key positions")
        ticks = [f"{i}:{lab}" if drawable(lab, families) else f"{i}" for i, lab in enumerate(labels)]
        fontsize = 9 if n_k <= 24 else (7 if n_k <= 48 else 5)
        ax.set_xticks(range(n_k), ticks, rotation=90, fontsize=fontsize, fontfamily=families)
        ax.set_yticks(range(n_q), ticks[n_k - n_q:], fontsize=fontsize, fontfamily=families)
    xlabel = "key (attended to)"
    if labels is not None and any(t == str(i) and lab != str(i) for i, (t, lab) in enumerate(zip(ticks, labels))):
        xlabel += "\n(no installed font draws some labels, e.g. Chinese: those ticks show the index only;\n" \
                  "pip install paperang-p2-fonts-cjk (the course's CJK font) and restart the kernel;\n" \
                  "a system font installed later is found on the next kernel start too)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("query (attending)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="attention probability")
    return fig


class _AttentionState:
    """The prompt's tokens and attention probabilities, recomputed only when the text changes."""

    def __init__(self, model, tokenizer, max_tokens: int, add_bos: bool):
        self.model, self.tokenizer = model, tokenizer
        self.max_tokens, self.add_bos = max_tokens, add_bos
        self.text = None
        self.weights = None
        self.labels: list[str] = []

    def set_text(self, text: str):
        if text == self.text:
            return
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if self.add_bos and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id] + ids
        if not ids:
            raise ValueError("the prompt is empty: type some text")
        ids = ids[: self.max_tokens]
        self.weights = attention_weights(self.model, torch.tensor([ids]))[:, 0]   # [layers, heads, t, t]
        self.labels = token_labels(self.tokenizer, ids)
        self.text = text


def attention_explorer(model, tokenizer, text: str = "The quick brown fox jumps over the lazy dog.",
                       max_tokens: int = 48, add_bos: bool = True):
    """A text box and layer/head sliders -> the attention heatmap of that head for the typed prompt.

    Returns a VBox with `.text`, `.layer`, `.head` (the controls), `.figure` (the latest figure),
    `.labels` (the token labels), `.weights` ([layers, heads, t, t]) and `.update()`. The prompt is
    cut to `max_tokens` tokens (bos first, as the pretrained model saw its training text)."""
    widgets = load_widgets()
    cfg = model.config
    state = _AttentionState(model, tokenizer, max_tokens, add_bos)
    text_box = widgets.Text(value=text, description="prompt", continuous_update=False,
                            layout=widgets.Layout(width="90%"))
    layer = widgets.IntSlider(value=0, min=0, max=cfg.num_hidden_layers - 1, description="layer",
                              continuous_update=False)
    head = widgets.IntSlider(value=0, min=0, max=cfg.num_attention_heads - 1, description="head",
                             continuous_update=False)
    tokens_line = widgets.HTML()
    out = widgets.Output()
    box = widgets.VBox([text_box, widgets.HBox([layer, head]), tokens_line, out])
    box.text, box.layer, box.head, box.out, box.figure = text_box, layer, head, out, None

    def update(change=None):
        import html

        try:
            state.set_text(text_box.value)
        except ValueError as e:
            tokens_line.value = f"<b>{html.escape(str(e))}</b>"
            return None
        box.labels, box.weights = state.labels, state.weights
        tokens_line.value = ("<small>" + " ".join(f"<code>{i}:{html.escape(lab)}</code>"
                                                  for i, lab in enumerate(state.labels)) + "</small>")
        n_rep = cfg.num_attention_heads // cfg.num_key_value_heads
        box.figure = attention_heatmap(
            state.weights[layer.value, head.value], state.labels,
            f"layer {layer.value}, query head {head.value} (KV head {head.value // n_rep}), "
            f"{len(state.labels)} tokens")
        show(out, box.figure)
        return box.figure

    for w in (text_box, layer, head):
        w.observe(update, names="value")
    box.update = update
    update()
    return keep_initial_state(box, figure=box.figure)


__all__ = ["rope_rotation_figure", "rope_explorer", "rope_wavelength_figure", "score_matrix_figure",
           "attention_weights", "attention_heatmap", "attention_explorer"]

"""What every picture and widget module shares.

    PngFigure      a matplotlib Figure that shows itself as a PNG in Jupyter, without pyplot
    load_widgets() the ipywidgets module, with a clear message when it is missing
    show(out, fig) replace what an ipywidgets Output shows with `fig`
    meta_model(config)   the model on the `meta` device: every shape, no memory
"""
from __future__ import annotations

import io

import torch
from matplotlib.figure import Figure


class PngFigure(Figure):
    """A Figure that shows itself as a PNG in Jupyter (display(fig), or a cell's last value) with any
    matplotlib backend and without pyplot, so no figure is left open or shown twice."""

    def _repr_png_(self):
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        return buf.getvalue()


def load_widgets():
    try:
        import ipywidgets
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise ImportError("the widgets need ipywidgets: pip install ipywidgets") from e
    return ipywidgets


def show(out, fig) -> None:
    """Show `fig` in the ipywidgets Output `out`, replacing what it showed before."""
    from IPython.display import display

    with out:
        out.clear_output(wait=True)
        display(fig)


def meta_model(config):
    """`MiniMindForCausalLM(config)` on the meta device: every parameter has its shape, none has
    memory, so even a 100M-parameter model costs nothing to inspect."""
    from ..model import MiniMindForCausalLM

    with torch.device("meta"):
        return MiniMindForCausalLM(config)

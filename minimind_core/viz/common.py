"""What every picture and widget module shares.

    PngFigure      a matplotlib Figure that shows itself as a PNG in Jupyter, without pyplot
    load_widgets() the ipywidgets module, with a clear message when it is missing
    show(out, fig) replace what an ipywidgets Output shows with `fig`
    cjk_font()     the name of an installed font with Chinese glyphs, or None
    font_families()        the fonts tick labels are drawn with (DejaVu Sans, then a CJK font if any)
    drawable(label, families)   whether those fonts have a glyph for every character of `label`
"""
from __future__ import annotations

import io
from functools import lru_cache

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


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The name of an installed font with Chinese glyphs, or None (matplotlib's default has none)."""
    from matplotlib import font_manager

    wanted = ("Noto Sans CJK", "Noto Serif CJK", "Source Han Sans", "WenQuanYi", "SimHei", "Microsoft YaHei",
              "PingFang", "Heiti", "Hiragino Sans GB", "AR PL", "Droid Sans Fallback", "Sarasa")
    for f in font_manager.fontManager.ttflist:
        if any(w.lower() in f.name.lower() for w in wanted):
            return f.name
    return None


def font_families() -> list[str]:
    """Matplotlib's default font, then a CJK font when one is installed (for Chinese labels)."""
    return ["DejaVu Sans"] + ([cjk_font()] if cjk_font() else [])


@lru_cache(maxsize=4)
def _charmap(family: str) -> frozenset:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties(family=family))
    return frozenset(FT2Font(path).get_charmap())


def drawable(label: str, families: list[str]) -> bool:
    """True when one of `families` has a glyph for every character of `label` (otherwise matplotlib
    would draw empty boxes and warn)."""
    maps = [_charmap(f) for f in families]
    return all(any(ord(c) in m for m in maps) for c in label)

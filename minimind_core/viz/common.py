"""What every picture and widget module shares.

    PngFigure      a matplotlib Figure that shows itself as a PNG in Jupyter, without pyplot
    load_widgets() the ipywidgets module, with a clear message when it is missing
    FULL_LABEL     a widget style whose description is shown in full ("temperature", not "temperat…")
    show(out, fig) replace what an ipywidgets Output shows with `fig`
    draw_chance(ax, chance)   a dashed chance line, labelled outside the axes where no bar hides it
    bar_label_y(value, chance)   where a bar's value label goes so that the chance line does not cross it
    keep_initial_state(box, figure, html)   a widget's saved output keeps a picture of its initial state
    cjk_font()     the name of a font with Chinese glyphs (system, or shipped by a PyPI package), or None
    font_families()        the fonts tick labels are drawn with (DejaVu Sans, then a CJK font if any)
    use_cjk_fallback()     make every figure draw Chinese with that font (done on import)
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


# ipywidgets gives a description 80 px and cuts longer ones with an ellipsis; "initial" sizes it to its text
FULL_LABEL = {"description_width": "initial"}


def load_widgets():
    try:
        import ipywidgets
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise ImportError("the widgets need ipywidgets: pip install ipywidgets") from e
    return ipywidgets


def keep_initial_state(box, figure=None, html: str | None = None):
    """Make a widget's saved output also hold a static picture of its initial state.

    A saved or exported notebook has no kernel, so a widget shows only its text repr
    ("VBox(...)"). This adds the initial figure (image/png) and/or HTML (text/html) to the
    widget's display data: Jupyter still draws the live widget, while a viewer without one
    (nbconvert, GitHub, a notebook opened without its widget state) shows the picture.
    """
    import base64

    extra = {}
    if figure is not None:
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        extra["image/png"] = base64.b64encode(buf.getvalue()).decode("ascii")
    if html is not None:
        extra["text/html"] = html
    live = box._repr_mimebundle_

    def bundle(**kwargs):
        data = dict(live(**kwargs) or {})
        data.update(extra)
        data["text/plain"] = f"{type(box).__name__} widget (run the cell to use it; its initial state is shown)"
        return data

    box._repr_mimebundle_ = bundle
    return box


def show(out, fig) -> None:
    """Show `fig` in the ipywidgets Output `out`, replacing what it showed before."""
    from IPython.display import display

    with out:
        out.clear_output(wait=True)
        display(fig)


def draw_chance(ax, chance: float, label: str | None = None) -> None:
    """A dashed line across the axes at `chance` (a fraction), labelled on the right outside the
    axes, where no bar and no legend can hide the label or be hidden by it."""
    ax.axhline(chance, color="grey", ls="--", lw=1)
    ax.text(1.005, chance, label or f"chance {100 * chance:.0f}%", transform=ax.get_yaxis_transform(),
            ha="left", va="center", fontsize=9, color="grey", clip_on=False)


def percent_bars(ax, x, values, slot: int, label: str, color, fontsize: int = 8):
    """One series of a pair of side-by-side bars (slot 0 left, 1 right of each x), each labelled
    with its value as a percentage just above it; returns the bars."""
    bars = ax.bar(x + (slot - 0.5) * 0.38, values, 0.36, label=label, color=color)
    for b, v in zip(bars, values):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.02, f"{v:.0%}", ha="center", va="bottom", fontsize=fontsize)
    return bars


def bar_label_y(value: float, chance: float | None, gap: float = 0.015, height: float = 0.06) -> float:
    """The y (on a 0-1.12 scale) of the label above a bar of `value`: just above the bar, or just
    above the chance line when the label would otherwise sit on it (a bar of 4% under a line at 7%)."""
    y = value + gap
    if chance is not None and y - gap / 2 <= chance <= y + height:
        y = chance + gap
    return y


# fonts with Chinese glyphs, by the names they register under (system fonts first)
CJK_FAMILIES = ("Noto Sans CJK", "Noto Serif CJK", "Source Han Sans", "WenQuanYi", "SimHei", "Microsoft YaHei",
                "PingFang", "Heiti", "Hiragino Sans GB", "AR PL", "Droid Sans Fallback", "Sarasa")
# font files that PyPI packages ship: (module, file inside it). The course depends on the first
# (wqy-microhei, 5 MB; pyproject.toml says why this one); mplfonts (Noto Sans CJK SC, 85 MB) is used
# when it happens to be installed. The packages are located, never imported: only the file is read.
PACKAGED_CJK_FONTS = (("paperang_p2_fonts_cjk", "fonts/wqy-microhei.ttc"),
                      ("mplfonts", "fonts/NotoSansCJKsc-Regular.otf"))


def _cjk_name(font_list) -> str | None:
    for f in font_list:
        if any(w.lower() in f.name.lower() for w in CJK_FAMILIES):
            return f.name
    return None


def _add_font_file(path) -> str | None:
    """Register a font file with matplotlib (no cache rebuild); its family name if it has CJK glyphs."""
    from matplotlib import font_manager

    try:
        font_manager.fontManager.addfont(str(path))
    except (OSError, RuntimeError, ValueError):
        return None
    return _cjk_name([f for f in font_manager.fontManager.ttflist if f.fname == str(path)])


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The name of a font with Chinese glyphs that matplotlib can use, or None.

    In order: a font matplotlib already knows; a CJK font file installed on the system after
    matplotlib built its font cache (registered now, so no cache refresh is needed); a font file
    that a PyPI package ships (PACKAGED_CJK_FONTS), so a cloud image without system CJK fonts
    still draws Chinese instead of empty boxes.
    """
    from matplotlib import font_manager

    name = _cjk_name(font_manager.fontManager.ttflist)
    if name:
        return name
    known = {f.fname for f in font_manager.fontManager.ttflist}
    for path in font_manager.findSystemFonts():
        if path not in known and any(k in path.lower() for k in ("cjk", "wqy", "wenquanyi", "droidsansfallback",
                                                                  "sourcehan", "simhei", "msyh", "pingfang")):
            name = _add_font_file(path)
            if name:
                return name
    return packaged_cjk_font()


def packaged_cjk_font() -> str | None:
    """Register the first CJK font file a PyPI package provides (PACKAGED_CJK_FONTS); its name, or None."""
    import importlib.util
    from pathlib import Path

    for module, rel in PACKAGED_CJK_FONTS:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / rel
        if path.is_file():
            name = _add_font_file(path)
            if name:
                return name
    return None


def font_families() -> list[str]:
    """Matplotlib's default font, then a CJK font when one is installed (for Chinese labels)."""
    return ["DejaVu Sans"] + ([cjk_font()] if cjk_font() else [])


def use_cjk_fallback() -> list[str]:
    """Make every figure fall back to the CJK font for characters DejaVu Sans lacks (matplotlib
    picks a font per glyph from the family list). Called when a picture module is imported."""
    import matplotlib

    families = font_families()
    matplotlib.rcParams["font.family"] = families
    return families


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


use_cjk_fallback()

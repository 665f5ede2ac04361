"""Figures draw Chinese with a real CJK glyph, also on a machine without system CJK fonts."""
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from minimind_core.viz import common  # noqa: E402


def _render(text):
    fig = common.PngFigure(figsize=(1.6, 0.7))
    fig.text(0.05, 0.2, text, fontsize=22)
    canvas = FigureCanvasAgg(fig)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy(), [str(w.message) for w in caught]


def test_a_chinese_label_renders_with_cjk_glyphs():
    assert common.cjk_font() is not None
    assert matplotlib.rcParams["font.family"][-1] == common.cjk_font()   # every figure falls back to it
    assert common.drawable("预训练，监督微调。", common.font_families())
    zhong, warned = _render("中")
    assert not [m for m in warned if "missing from" in m], warned
    wen, _ = _render("文")
    # a missing glyph is drawn as the same empty box for every character: real glyphs differ
    assert (zhong < 128).any() and not np.array_equal(zhong, wen)
    box_a, warned_a = _render("\U000F0000")   # private-use characters: no font has them
    box_b, _ = _render("\U000F0001")
    assert [m for m in warned_a if "missing from" in m] and np.array_equal(box_a, box_b)


def test_the_packaged_font_is_found_without_any_system_font():
    import sys

    name = common.packaged_cjk_font()   # the PyPI font the course depends on, registered from its file
    assert name == "WenQuanYi Micro Hei"
    assert "paperang_p2_fonts_cjk" not in sys.modules   # located, not imported: none of its code runs
    path = matplotlib.font_manager.findfont(matplotlib.font_manager.FontProperties(family=name))
    assert path.endswith("wqy-microhei.ttc")
    assert ord("训") in common._charmap(name)


def test_every_widget_keeps_a_picture_of_its_initial_state():
    import torch

    from minimind_core.viz import sampling, training

    box = training.lr_explorer(total=50, base_lr=1e-3)
    data = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data      # Jupyter still draws the live widget
    assert data["image/png"] and "initial state" in data["text/plain"]
    logits = torch.linspace(-3, 3, 40)
    sbox = sampling.sampling_explorer(logits, n=10)
    sdata = sbox._repr_mimebundle_()
    assert sdata["image/png"] and sdata["text/html"] == sbox.summary.value

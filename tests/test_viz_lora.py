"""LoRA pictures and widgets: counts agree with the library, figures and the rank explorer update."""
import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn as nn

from conftest import small_config
from minimind_core import MiniMindConfig, MiniMindForCausalLM, lora
from minimind_core.viz import lora as viz


def test_minimind_variant_on_minimind2_small_is_131072():
    cfg = MiniMindConfig()
    assert viz.lora_parameter_count(cfg, 8, "minimind") == 131_072
    names = [n for n, _, _ in viz.lora_targets(cfg, "minimind")]
    assert len(names) == 16 and all(n.endswith(("q_proj", "o_proj")) for n in names)
    assert viz.base_parameter_count(cfg) == 25_829_888
    assert "0.51% of 25,829,888" in viz.rank_summary(cfg, 8, "minimind")


@pytest.mark.parametrize("targets", ["minimind", "all", ["k_proj", "down_proj"]])
@pytest.mark.parametrize("rank", [1, 4])
def test_counts_agree_with_an_adapted_model(targets, rank):
    cfg = small_config()
    model = MiniMindForCausalLM(cfg)
    lora.apply_lora(model, rank=rank, targets=targets)
    assert viz.lora_parameter_count(cfg, rank, targets) == lora.count_lora_parameters(model)


def test_rank_table_is_linear_in_rank():
    rows = viz.rank_table(small_config(), ranks=(1, 2, 8))
    by = {(r["targets"], r["rank"]): r["params"] for r in rows}
    for label in viz.DEFAULT_TARGET_SETS:
        assert by[(label, 8)] == 8 * by[(label, 1)] == 4 * by[(label, 2)]
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        viz.lora_parameter_count(small_config(), 0)


def test_params_figure_has_a_line_per_target_set():
    fig = viz.lora_params_figure(MiniMindConfig(), ranks=(2, 8, 32))
    ax = fig.axes[0]
    lines = [l for l in ax.get_lines() if len(l.get_xdata()) == 3]
    assert len(lines) == 2
    assert list(lines[0].get_ydata()) == [32_768, 131_072, 524_288]
    assert any("131,072" in t.get_text() for t in ax.texts)


def test_rank_explorer_updates_on_rank_and_targets():
    box = viz.rank_explorer(MiniMindConfig())
    assert "131,072" in box.summary.value
    box.rank.value = 16
    assert "262,144" in box.summary.value
    box.targets.value = "all"
    assert "56 layers" in box.summary.value and "1,163,264" in box.summary.value


def test_delta_weight_figure_shows_at_most_rank_nonzero_singular_values():
    torch.manual_seed(0)
    layer = lora.LoRALinear(nn.Linear(40, 24, bias=False), rank=3)
    nn.init.normal_(layer.lora_B)
    fig = viz.delta_weight_figure(layer, "q_proj")
    sv = fig.axes[2].get_lines()[0].get_ydata()
    assert len(sv) == 24
    assert sv[2] > 1e-3 and sv[3] < 1e-4 * sv[0]
    layer.merge()   # a merged layer shows the same picture (W is taken back out for the left panel)
    fig2 = viz.delta_weight_figure(layer)
    assert fig2.axes[0].images[0].get_array().shape == (24, 40)
    with pytest.raises(TypeError, match="LoRALinear"):
        viz.delta_weight_figure(nn.Linear(3, 3))


def test_cost_table(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.safetensors").write_bytes(b"x" * 4096)
    (tmp_path / "a" / "config.json").write_text("{}")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "adapter.safetensors").write_bytes(b"x" * 1024)
    assert viz.folder_size(tmp_path / "a") == 4098
    assert viz.weights_size(tmp_path / "a") == 4096
    with pytest.raises(FileNotFoundError, match="no .safetensors"):
        viz.weights_size(tmp_path)
    rows = viz.cost_rows({
        "full SFT": dict(trainable=1000, total=1000, steps=10, seconds=5.0, weights_bytes=4096),
        "LoRA": dict(trainable=10, total=1010, steps=10, seconds=2.0, weights_bytes=1024),
    })
    assert rows[1]["s_per_step"] == pytest.approx(0.2)
    html = viz.cost_table_html(rows)
    assert html.count("<tr>") == 3 and "0.250x" in html and "4.0 kB" in html
    with pytest.raises(ValueError, match="lacks seconds"):
        viz.cost_rows({"x": dict(trainable=1, total=1, steps=1, weights_bytes=1)})


def test_before_after_figure():
    fig = viz.before_after_figure({"identity (Nova)": (0.0, 0.9), "held-out facts": (0.5, 0.45)})
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 2) for p in ax.patches)
    assert heights == [0.0, 0.45, 0.5, 0.9]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["identity (Nova)", "held-out facts"]
    with pytest.raises(ValueError):
        viz.before_after_figure({})

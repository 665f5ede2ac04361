"""The GRPO pictures build from what the lesson gives them, and say so when given something else."""
import pytest

from minimind_core.viz import grpo as viz


def test_figures_build():
    assert len(viz.ppo_vs_grpo_figure().axes) == 2
    assert len(viz.clip_figure(0.2).axes) == 2
    fig = viz.group_figure(["She lives in Rosmere.", "她住在青岚城。" * 10], [1.0, -0.5], [1.0, -1.0], title="Q")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == "She lives in Rosmere." and labels[1].endswith("…") and len(labels[1]) <= 41
    rows = [{"step": s, "reward": 0.5 + s / 100, "sample_accuracy": 0.5, "in_format": 1.0, "kl": 0.01 * s,
             "reply_tokens": 6.0} for s in range(5, 55, 5)]
    fig = viz.training_curves_figure(rows)
    assert len(fig.axes) == 4 and fig._repr_png_()[:4] == b"\x89PNG"


def test_training_curves_need_a_grpo_run():
    with pytest.raises(ValueError, match="GRPO run"):
        viz.training_curves_figure([{"step": 1, "loss": 2.0}])

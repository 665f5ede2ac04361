"""DPO pictures: the style against the facts it costs, and the beta sweep, as labelled paired bars."""
import matplotlib

matplotlib.use("Agg")

from minimind_core.viz.dpo import beta_sweep_figure, style_tax_figure


def test_style_tax_figure_pairs_style_and_facts_for_each_model():
    fig = style_tax_figure({"SFT": {"style": 0.0, "facts": 0.84}, "DPO": {"style": 0.99, "facts": 0.79}})
    ax = fig.axes[0]
    heights = [round(p.get_height(), 2) for p in ax.patches]
    assert heights == [0.0, 0.99, 0.84, 0.79]                  # the style series, then the facts series
    assert [t.get_text() for t in ax.texts] == ["0%", "99%", "84%", "79%"]
    left_of_pair = ax.patches[0].get_x() < ax.patches[2].get_x()
    assert left_of_pair and abs(ax.patches[0].get_x() + 0.38 - ax.patches[2].get_x()) < 1e-9


def test_beta_sweep_figure_draws_the_baseline_of_each_measure():
    results = {0.01: {"style": 0.99, "facts": 0.81, "drift": 1.0}, 5.0: {"style": 0.99, "facts": 0.81, "drift": 0.2}}
    fig = beta_sweep_figure(results, baseline={"style": 0.0, "facts": 0.84})
    left = fig.axes[0]
    assert len(left.patches) == 4
    assert sorted(round(l.get_ydata()[0], 2) for l in left.lines) == [0.0, 0.84]

"""Training pictures and widgets: figures hold the data they were given, callbacks redraw."""
import json
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minimind_core.launch import stream_command, torchrun_command  # noqa: E402
from minimind_core.train import lr_at  # noqa: E402
from minimind_core.viz import training as vt  # noqa: E402


def _rows(n, total=100, lr=1e-3, warmup=0, every=5):
    return [dict(step=s, loss=8.0 * math.exp(-s / 30) + 1.0, lr=lr_at(s - 1, total, lr, warmup), tokens=s * 1024,
                 tokens_per_s=5000.0, elapsed_s=s * 0.1, grad_norm=2.0 / (1 + s), epoch=s / total)
            for s in range(every, every * n + 1, every)]


def _line(ax, label):
    for line in ax.get_lines():
        if line.get_label() == label:
            return line
    raise AssertionError(f"no line labelled {label!r}: {[l.get_label() for l in ax.get_lines()]}")


def test_lr_curve_is_the_training_schedule():
    curve = vt.lr_curve(50, 2e-3, warmup=5)
    assert curve.shape == (50,)
    assert curve[0] == pytest.approx(2e-3 / 5)
    assert curve[5] == pytest.approx(2e-3)
    assert curve[-1] == pytest.approx(lr_at(49, 50, 2e-3, 5))
    with pytest.raises(ValueError, match="at least 1"):
        vt.lr_curve(0, 1e-3)


def test_training_figure_shows_rows_baselines_and_plan():
    rows = _rows(8)
    fig = vt.training_figure(rows, total_steps=100, base_lr=1e-3, baselines={"uniform ln V": 7.62, "unigram": 5.5})
    ax_loss, ax_lr = fig.axes
    loss = _line(ax_loss, "training loss")
    np.testing.assert_allclose(loss.get_xdata(), [r["step"] for r in rows])
    np.testing.assert_allclose(loss.get_ydata(), [r["loss"] for r in rows])
    assert _line(ax_loss, "unigram: 5.50").get_ydata()[0] == pytest.approx(5.5)
    plan = _line(ax_lr, "planned schedule")
    assert len(plan.get_xdata()) == 100 and plan.get_ydata()[0] == pytest.approx(1e-3)
    # the plan passes through the logged points (row k's lr is that of update k - 1)
    np.testing.assert_allclose(np.interp([r["step"] for r in rows], plan.get_xdata(), plan.get_ydata()),
                               [r["lr"] for r in rows])
    assert ax_loss.get_xlim() == (0, 100)
    title = fig._suptitle.get_text()
    assert "step 40/100" in title and f"loss {rows[-1]['loss']:.3f}" in title and "tokens/s" in title


def test_both_figures_draw_val_loss_where_it_was_logged(tmp_path):
    rows = _rows(10)
    for i in (0, 4, 9):
        rows[i]["val_loss"] = 6.0 - i * 0.3
    val_rows = [r for r in rows if "val_loss" in r]
    fig = vt.training_figure(rows, total_steps=100)
    val = _line(fig.axes[0], "validation loss (held out): 3.300")
    np.testing.assert_allclose(val.get_xdata(), [r["step"] for r in val_rows])
    np.testing.assert_allclose(val.get_ydata(), [r["val_loss"] for r in val_rows])
    assert "val 3.300" in fig._suptitle.get_text()
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    m = vt.metrics_figure(tmp_path)
    np.testing.assert_allclose(_line(m.axes[0], "validation loss (held out): 3.300").get_xdata(),
                               [r["tokens"] for r in val_rows])
    assert "validation loss 3.300" in m._suptitle.get_text()
    assert m.axes[0].get_title() == "training and validation loss"
    # a run without validation draws no such line
    assert all("validation" not in l.get_label() for l in vt.training_figure(_rows(3)).axes[0].get_lines())


def test_training_figure_without_rows_is_an_empty_frame():
    fig = vt.training_figure([], total_steps=10, base_lr=1e-3, baselines={"unigram": 5.0})
    assert [l.get_label() for l in fig.axes[1].get_lines()] == ["planned schedule"]


def test_live_plot_throttles_and_always_draws_at_the_end():
    plot = vt.LiveTrainingPlot(total_steps=100, base_lr=1e-3, min_interval=3600, display=False)
    rows = _rows(6)
    for r in rows:
        plot.on_log(r)
    assert plot.draws == 1  # the first row draws, the rest fall inside the interval
    assert len(plot.rows) == 6
    assert len(_line(plot.figure.axes[0], "training loss").get_xdata()) == 1
    plot.on_end(None)
    assert plot.draws == 2
    np.testing.assert_allclose(_line(plot.figure.axes[0], "training loss").get_ydata(), [r["loss"] for r in rows])

    eager = vt.LiveTrainingPlot(min_interval=0, display=False)
    for r in rows:
        eager(r)  # a plain callable works as a train() callback too
    assert eager.draws == 6


def test_live_plot_displays_through_one_handle(monkeypatch):
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    def fake_display(obj, display_id=False):
        shown.append(("display", obj))
        return Handle()

    import IPython.display

    monkeypatch.setattr(IPython.display, "display", fake_display)
    plot = vt.LiveTrainingPlot(min_interval=0)
    for r in _rows(3):
        plot.on_log(r)
    assert [k for k, _ in shown] == ["display", "update", "update"]
    assert all(isinstance(obj, IPython.display.Image) and obj.data[:4] == b"\x89PNG" for _, obj in shown)


def test_live_plot_follows_a_metrics_file(tmp_path):
    plot = vt.LiveTrainingPlot(min_interval=0, display=False)
    assert not plot.update_from_metrics(tmp_path)  # no file yet: nothing to draw
    rows = _rows(4)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]) + '{"step": 1', "utf-8")
    assert plot.update_from_metrics(tmp_path) and len(plot.rows) == 2  # a torn last line is ignored
    assert not plot.update_from_metrics(tmp_path)  # nothing new
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    assert plot.update_from_metrics(tmp_path / "metrics.jsonl") and plot.draws == 2
    assert len(_line(plot.figure.axes[0], "training loss").get_xdata()) == 4


def test_metrics_figure_reads_a_run_folder(tmp_path):
    rows = _rows(10)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    fig = vt.metrics_figure(tmp_path, smooth=3)
    a, b, c, d = fig.axes
    np.testing.assert_allclose(_line(a, "loss").get_xdata(), [r["tokens"] for r in rows])
    assert len(_line(a, "mean of 3").get_xdata()) == 8
    np.testing.assert_allclose(b.get_lines()[0].get_ydata(), [r["lr"] for r in rows])
    np.testing.assert_allclose(c.get_lines()[0].get_ydata(), [r["grad_norm"] for r in rows])
    assert "10 logged steps" in fig._suptitle.get_text()
    with pytest.raises(FileNotFoundError, match="no metrics rows"):
        vt.metrics_figure(tmp_path / "nothing")


def test_lr_schedule_figure_marks_peak_floor_and_warmup():
    fig = vt.lr_schedule_figure(200, 5e-4, warmup=20, show_steps=[100])
    ax = fig.axes[0]
    main = _line(ax, "lr(t) with 20 warmup steps")
    np.testing.assert_allclose(main.get_ydata(), [lr_at(s, 200, 5e-4, 20) for s in range(200)])
    assert _line(ax, "floor lr/10 = 5e-05").get_ydata()[0] == pytest.approx(5e-5)
    assert _line(ax, "no warmup").get_ydata()[0] == pytest.approx(5e-4)
    assert any("t=100" in t.get_text() for t in ax.texts)


def test_lr_explorer_sliders_redraw():
    box = vt.lr_explorer(total=400, base_lr=5e-4, warmup=0)
    first = box.figure
    assert _line(first.axes[0], "lr(t)").get_ydata()[0] == pytest.approx(5e-4)
    box.lr.value = 1e-3
    assert box.figure is not first
    assert _line(box.figure.axes[0], "lr(t)").get_ydata()[0] == pytest.approx(1e-3, rel=1e-6)
    box.warmup.value = 50
    assert _line(box.figure.axes[0], "lr(t) with 50 warmup steps").get_ydata()[49] == pytest.approx(1e-3, rel=1e-6)
    box.total.value = 60  # warmup is clamped to half of T
    assert box.warmup.max == 30 and box.warmup.value == 30
    assert len(_line(box.figure.axes[0], "lr(t) with 30 warmup steps").get_xdata()) == 60


def test_padding_fraction_and_figure():
    real = np.zeros((4, 10), dtype=bool)
    real[0, :10] = True
    real[1, :5] = True
    real[2, :3] = True
    real[3, :2] = True
    assert vt.padding_fraction(real) == pytest.approx(1 - 20 / 40)
    with pytest.raises(ValueError, match="empty"):
        vt.padding_fraction(np.zeros((0, 4), dtype=bool))
    packed = np.array([[1, 5, 6, 2, 1, 7, 2, 1, 8, 9], [9, 9, 2, 1, 5, 2, 1, 3, 3, 3]] * 2)
    fig = vt.padding_figure(real, packed, eos_id=2, lengths=[3, 5, 20, 7], seq_len=10)
    a, b, c = fig.axes
    assert "50% of positions are padding" in a.get_title()
    assert "0% padding" in b.get_title() and "documents in the picture" in b.get_title()
    np.testing.assert_array_equal(a.get_images()[0].get_array(), real.astype(int))
    # document index flips after every eos (2): row 0 = docs 0,0,0,0,1,1,1,2,2,2
    assert list(b.get_images()[0].get_array()[0]) == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert "4 documents" in c.get_title()
    fig2 = vt.padding_figure(real, packed)
    assert len(fig2.axes) == 2
    with pytest.raises(ValueError, match="batch, seq"):
        vt.padding_figure(real[0], packed)


@pytest.mark.slow
def test_torchrun_run_streams_into_a_live_plot(tmp_path):
    """The notebook's several-GPU branch, on the CPU: torchrun with 2 gloo processes, output streamed,
    the live plot following the run's metrics file."""
    out = tmp_path / "run"
    cmd = torchrun_command("pretrain", 2, "smoke", extra=["--out", str(out), "--max-steps", "6", "--log-every", "2",
                                                         "--no-progress", "--device", "cpu", "--threads", "1"])
    plot = vt.LiveTrainingPlot(total_steps=6, base_lr=3e-3, min_interval=0, display=False)
    lines = []
    rc = stream_command(cmd, on_line=lines.append, poll=lambda: plot.update_from_metrics(out), poll_every=0.0,
                        env={"OMP_NUM_THREADS": "1"})
    text = "\n".join(lines)
    assert rc == 0, text[-3000:]
    assert "2 rank(s)" in text and "Epoch:[1/1]" in text and "loss:" in text
    assert [r["step"] for r in plot.rows] == [2, 4, 6]
    assert len(_line(plot.figure.axes[0], "training loss").get_xdata()) == 3

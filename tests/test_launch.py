"""Launching a run as its own process: the torchrun command line, and its output streamed line by line.

The end-to-end run (torchrun with two processes feeding a live plot) is in test_viz_training.py.
"""
import sys

from minimind_core.launch import stream_command, torchrun_command


def test_stream_command_streams_lines_and_polls():
    lines, polls = [], []
    code = ("import sys, time\n"
            "for i in range(3):\n"
            "    print(f'line {i}', flush=True); time.sleep(0.05)\n"
            "print('oops', file=sys.stderr); sys.exit(3)")
    rc = stream_command([sys.executable, "-c", code], on_line=lines.append, poll=lambda: polls.append(1),
                        poll_every=0.0)
    assert rc == 3
    assert lines == ["line 0", "line 1", "line 2", "oops"]
    assert len(polls) >= 2  # during the run and once at the end


def test_torchrun_command():
    cmd = torchrun_command("pretrain", 4, profile="tiny", extra=["--no-progress"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in cmd
    assert cmd[-6:] == ["minimind_core", "train", "pretrain", "--profile", "tiny", "--no-progress"]

"""benchmarks/rehearsal.py: the synthetic file has pretrain_t2t_mini's shape, and the projection's
arithmetic is the one benchmarks/gpu_check.sh uses for MFU."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rehearsal():
    spec = importlib.util.spec_from_file_location("rehearsal", ROOT / "benchmarks" / "rehearsal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_file_is_shaped_like_pretrain_t2t_mini(rehearsal, tmp_path):
    path = tmp_path / "synthetic.jsonl"
    stats = rehearsal.make_corpus(path, 1.0, seed=3)
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(texts) == stats["docs"] and stats["bytes"] == path.stat().st_size >= 1e6
    assert all(200 <= len(t) <= 1500 for t in texts)
    p10, p50, p90 = stats["chars_p10_p50_p90"]
    assert 200 <= p10 < p50 < p90 <= 1500 and 400 <= p50 <= 700
    zh = sum(not t[0].isascii() for t in texts) / len(texts)
    assert 0.7 <= zh <= 0.9                          # mostly Chinese, some English
    assert rehearsal.make_corpus(tmp_path / "again.jsonl", 1.0, seed=3)["docs"] == stats["docs"]
    assert (tmp_path / "again.jsonl").read_bytes() == path.read_bytes()
    half = rehearsal.prefix_file(path, tmp_path / "half.jsonl", stats["bytes"] / 2)
    assert half <= stats["bytes"] / 2 and path.read_bytes().startswith((tmp_path / "half.jsonl").read_bytes())


def test_flops_and_projection(rehearsal):
    fpt = rehearsal.flops_per_token(25_829_888, 8, 512, 768)
    assert fpt == 6 * 25_829_888 + 12 * 8 * 512 * 768
    rows = {gpu: (mfu, tps, hours) for gpu, _, mfu, tps, hours in rehearsal.projection(2.55e8, fpt, None)}
    assert rows["RTX 4090"][0] == 0.3 and rows["H100 SXM"][0] == 0.2
    assert rows["RTX 4090"][1] == pytest.approx(165e12 * 0.3 / fpt)
    assert rows["RTX 3090"][2] == pytest.approx(2.55e8 / (71e12 * 0.3 / fpt) / 3600)
    assert all(math.isclose(m, 0.5) for m, _, _ in
               ((mfu, t, h) for _, _, mfu, t, h in rehearsal.projection(1e6, fpt, 0.5)))

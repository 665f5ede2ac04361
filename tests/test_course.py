"""The lesson helpers: a missing or unfinished earlier stage is announced, then trained or resumed,
never overwritten; a finished one is reused as it is."""
import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_train import make_corpus  # noqa: E402

from minimind_core import checkpoint as ck  # noqa: E402
from minimind_core.profiles import Profile, StageRecipe, get_profile  # noqa: E402


@dataclasses.dataclass(frozen=True)
class HereProfile(Profile):
    """A profile whose run folders live under `root` (not the project's runs/)."""

    root: Path | None = None

    def run_dir(self, stage: str) -> Path:
        return self.root / self.name / stage


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("course_corpus"))


def profile(corpus, root) -> HereProfile:
    common = dict(epochs=1, batch_size=4, accum=1, lr=1e-2, seq_len=64, log_every=1)
    return HereProfile(name="lesson", model=get_profile("smoke").model, tokenizer=corpus["tokenizer"],
                       eval_qa=None, root=root, stages={
                           "pretrain": StageRecipe(data=corpus["pretrain"], max_steps=6, save_every=3, **common),
                           "sft": StageRecipe(data=corpus["sft"], max_steps=2, init="pretrain", **common)})


QUIET = dict(progress=False, threads=1)


class Interrupted(Exception):
    pass


def test_unfinished_run_is_resumed_and_a_finished_one_reused(corpus, tmp_path, capsys):
    from minimind_core.course import checkpoint_or_train
    from minimind_core.train import train

    prof = profile(corpus, tmp_path / "runs")
    cache = dict(cache_dir=corpus["pretrain"].parent / "cache")
    straight = train("pretrain", prof, out=tmp_path / "straight", **cache, **QUIET)

    def stop_at_step_4(row):  # an interrupted lesson 04: the checkpoint of step 3 stays
        if row["step"] == 4:
            raise Interrupted
    with pytest.raises(Interrupted):
        train("pretrain", prof, callbacks=[stop_at_step_4], **cache, **QUIET)
    run_dir = prof.run_dir("pretrain")
    assert ck.run_status(run_dir) == ("unfinished", run_dir / "checkpoints" / "step_000003")
    capsys.readouterr()

    found = checkpoint_or_train("pretrain", prof, **cache, **QUIET)
    out = capsys.readouterr().out
    assert found == run_dir / "checkpoints" / "step_000006"
    assert out.splitlines()[0] == (f"The 'pretrain' run of the lesson profile in {run_dir} is unfinished (newest "
                                   "checkpoint step_000003): resuming it now; the pretrain lesson reuses this run instead of "
                                   "training again.")
    assert "(step 3/6)" in out
    # resumed, not started over: the run reads as if it had never stopped
    assert [(r["step"], r["loss"]) for r in ck.read_metrics(run_dir)] == [(r["step"], r["loss"]) for r in straight.metrics]
    assert (found / "model.safetensors").read_bytes() == (straight.checkpoint / "model.safetensors").read_bytes()

    # finished: reused without a word, without training
    mtime = (run_dir / ck.METRICS).stat().st_mtime_ns
    assert checkpoint_or_train("pretrain", prof, **cache, **QUIET) == found
    assert capsys.readouterr().out == ""
    assert (run_dir / ck.METRICS).stat().st_mtime_ns == mtime


def test_missing_stage_is_announced_then_trained_after_its_prerequisite(corpus, tmp_path, capsys):
    from minimind_core.course import checkpoint_or_train, load_stage
    from minimind_core.errors import CheckpointError

    prof = profile(corpus, tmp_path / "runs")
    with pytest.raises(CheckpointError, match="no finished 'sft' run of the lesson profile"):
        load_stage("sft", prof, train_missing=False)
    found = checkpoint_or_train("sft", prof, cache_dir=corpus["pretrain"].parent / "cache", **QUIET)
    lines = capsys.readouterr().out.splitlines()
    announced = [line for line in lines if line.startswith("No '")]
    assert announced == [
        f"No 'sft' checkpoint for the lesson profile in {prof.run_dir('sft')}: training it now, once; "
        "the sft lesson reuses this run instead of training again.",
        f"No 'pretrain' checkpoint for the lesson profile in {prof.run_dir('pretrain')}: training it now, once; "
        "the pretrain lesson reuses this run instead of training again."]
    assert found.name == "step_000002"
    assert ck.run_status(prof.run_dir("pretrain"))[0] == ck.run_status(prof.run_dir("sft"))[0] == "complete"
    model, tokenizer = load_stage("sft", prof, device="cpu", train_missing=False)
    assert not model.training and len(tokenizer) == len(ck.load_tokenizer_for(found))


def test_quiet_training_shows_one_line_and_keeps_the_log_in_the_run_folder(corpus, tmp_path, capsys):
    from minimind_core.course import checkpoint_or_train

    prof = profile(corpus, tmp_path / "runs")
    found = checkpoint_or_train("pretrain", prof, quiet=True, cache_dir=corpus["pretrain"].parent / "cache",
                                threads=1)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("No 'pretrain' checkpoint") and out[1].startswith("  done in ")
    log = (prof.run_dir("pretrain") / "train.log").read_text(encoding="utf-8")
    assert "Epoch:[1/1]" in log and "loss:" in log
    assert ck.run_status(prof.run_dir("pretrain")) == ("complete", found)


def test_full_profile_reads_todays_files_and_says_how_to_get_each(tmp_path):
    """Every file of the full profile is one MiniMind publishes today (and the missing-file message
    names its `data download` command) or ships with the course; none is a retired name."""
    from minimind_core.course import MissingDataError, require_data
    from minimind_core.download import REGISTRY, RETIRED
    from minimind_core.profiles import SAMPLE_DIR

    full = get_profile("full")
    files = {stage: full.stage(stage).data for stage in ("pretrain", "sft", "lora", "dpo", "distill")}
    assert {s: p.name for s, p in files.items()} == {
        "pretrain": "pretrain_t2t_mini.jsonl", "sft": "sft_t2t_mini.jsonl", "lora": "identity.jsonl",
        "dpo": "dpo.jsonl", "distill": "sft_t2t_mini.jsonl"}
    assert files["lora"].parent == SAMPLE_DIR and require_data(files["lora"]) == files["lora"]
    for stage, path in files.items():
        assert path.stem not in RETIRED
        if path.parent != SAMPLE_DIR:
            assert path.name in REGISTRY
            with pytest.raises(MissingDataError, match=f"data download {path.stem}\n"):
                require_data(tmp_path / path.name)
    assert (full.stage("pretrain").seq_len, full.stage("sft").seq_len, full.stage("dpo").seq_len) == (768, 768, 1024)
    assert (full.stage("pretrain").lr, full.stage("sft").lr, full.stage("dpo").lr) == (5e-4, 1e-5, 4e-8)
    assert (full.stage("dpo").dpo.beta, full.stage("dpo").dpo.score) == (0.15, "sum")

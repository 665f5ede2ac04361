"""White-box distillation: a student cut from its teacher, soft labels, and the distill stage's student_layers."""
import pytest
import torch

from minimind_core.distill import entropy_bits, soft_labels, student_from_teacher
from conftest import small_config


def _teacher(layers=4):
    from minimind_core import MiniMindForCausalLM

    torch.manual_seed(0)
    model = MiniMindForCausalLM(small_config(num_hidden_layers=layers)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_a_student_of_all_layers_is_the_teacher():
    teacher = _teacher()
    student = student_from_teacher(teacher, range(4)).eval()
    ids = torch.randint(0, 300, (2, 12))
    torch.testing.assert_close(student(ids).logits, teacher(ids).logits)


def test_a_student_of_some_layers_runs_them_in_order_and_owns_its_weights():
    teacher = _teacher()
    student = student_from_teacher(teacher, (0, 2)).eval()
    assert student.config.num_hidden_layers == 2
    torch.testing.assert_close(student.model.layers[1].mlp.up_proj.weight, teacher.model.layers[2].mlp.up_proj.weight)
    with torch.no_grad():
        student.model.layers[0].mlp.up_proj.weight.add_(1.0)
    assert not torch.equal(student.model.layers[0].mlp.up_proj.weight, teacher.model.layers[0].mlp.up_proj.weight)
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()  # still tied


def test_bad_student_layers_say_what_is_wrong():
    teacher = _teacher()
    with pytest.raises(ValueError, match="indices of the teacher's 4 layers"):
        student_from_teacher(teacher, (0, 4))
    with pytest.raises(ValueError, match="keeps the teacher's hidden_size"):
        student_from_teacher(teacher, (0,), hidden_size=32)


def test_soft_labels_flatten_with_the_temperature():
    logits = torch.tensor([4.0, 1.0, 0.0, -2.0])
    h = [float(entropy_bits(soft_labels(logits, t))) for t in (0.5, 1.0, 2.0, 8.0)]
    assert h == sorted(h) and h[-1] < 2.0 + 1e-6
    assert float(entropy_bits(torch.tensor([0.0, 1.0, 0.0]))) == 0.0
    with pytest.raises(ValueError, match="temperature"):
        soft_labels(logits, 0.0)


def test_distill_stage_cuts_the_student_from_the_teacher(tmp_path):
    from minimind_core.checkpoint import load_model, save_checkpoint
    from minimind_core.profiles import get_profile
    from minimind_core.tokenizer import load_tokenizer
    from minimind_core.train import train

    from minimind_core import MiniMindForCausalLM
    from minimind_core.config import MiniMindConfig

    torch.manual_seed(0)
    teacher = MiniMindForCausalLM(MiniMindConfig(**{**get_profile("smoke").model, "num_hidden_layers": 3}))
    tok = load_tokenizer(get_profile("smoke").tokenizer)
    save_checkpoint(tmp_path / "teacher", 1, model=teacher, tokenizer=tok, info={"stage": "sft"})
    r = train("distill", "smoke", teacher=tmp_path / "teacher", student_layers=(0, 2), max_steps=1, lr=1e-12,
              out=tmp_path / "student", progress=False)
    student = load_model(r.checkpoint)
    assert student.config.num_hidden_layers == 2
    torch.testing.assert_close(student.model.layers[1].self_attn.q_proj.weight, teacher.model.layers[2].self_attn.q_proj.weight)
    from minimind_core.errors import TrainError

    with pytest.raises(TrainError, match="student_layers"):
        train("distill", "smoke", teacher=tmp_path / "teacher", student_layers=(0, 5), max_steps=1,
              out=tmp_path / "bad", progress=False)


def test_cli_reads_student_layers():
    from minimind_core.cli import build_parser
    from minimind_core.cli.errors import CLIError
    from minimind_core.cli.train import train_kwargs

    args = build_parser().parse_args(["train", "distill", "--student-layers", "0,2"])
    assert train_kwargs(args)["student_layers"] == (0, 2)
    with pytest.raises(CLIError, match="--student-layers"):
        train_kwargs(build_parser().parse_args(["train", "distill", "--student-layers", "first"]))



def test_thinking_figure_draws_one_bar_per_model_and_labels_guessing_outside_the_bars():
    import matplotlib

    matplotlib.use("Agg")
    from minimind_core.viz.distill import thinking_figure

    fig = thinking_figure({"asked directly": 0.08, "answers only": 0.29, "traces": 0.62})
    ax = fig.axes[0]
    assert [round(p.get_height(), 2) for p in ax.patches] == [0.08, 0.29, 0.62]
    guess = [t for t in ax.texts if t.get_text().startswith("guessing")]
    assert len(guess) == 1 and guess[0].get_position()[0] > 1.0   # axes coordinates: right of the plot

"""What each stage trains, on which batches, and how its loss is made.

The loop (loop.py) is the same for every stage; a task supplies the stage-specific parts:

    build_model(resume_from)   the model to train (and any frozen helper: DPO's reference, the teacher)
    sources()                  the datasets to draw micro-batches from ("main", SFT's mixed-in "pretrain")
    counts(micro)              how many units (target tokens, pairs) each loss component sums over
    forward(model, micro)      -> Forward: the loss sums of one micro-batch and values to log
    save_payload(model)        what a checkpoint holds (the model, or only a LoRA adapter)

A component's loss is its sum divided by its count over all micro-batches and ranks of the
optimizer step, so the step's loss is exactly the token- (or pair-) weighted mean.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..errors import CheckpointError, TrainError
from ..losses import IGNORE_INDEX, distill_loss, dpo_loss, n_targets, sequence_logprobs, token_ce_sum
from .batches import Source

# ----------------------------------------------------------------------------------------------
# models and tokenizer, with errors that name the option at fault


def model_dir(path, what: str = "--init") -> Path:
    """The model folder `path` names (a run folder: its newest checkpoint); `what` names the option."""
    if path is None:
        raise TrainError(f"this stage starts from a trained model: pass {what} DIR (a model or run folder)")
    try:
        return ckpt.resolve_model_dir(path)
    except CheckpointError as e:
        raise TrainError(f"{what} {e}") from None


def check_vocab(vocab_size: int, tokenizer, what: str) -> None:
    if len(tokenizer) > vocab_size:
        raise TrainError(f"tokenizer has {len(tokenizer)} tokens but {what} has vocab_size {vocab_size}: "
                         "token ids would fall outside the embedding table (use the model's own tokenizer)")


def load_model_checked(path, tokenizer, what: str):
    """The model at `path`, on the CPU in fp32, checked against the run's tokenizer."""
    d = model_dir(path, what)
    try:
        model = ckpt.load_model(d)
    except CheckpointError as e:
        raise TrainError(f"{what} {e}") from None
    check_vocab(model.config.vocab_size, tokenizer, f"the model in {d}")
    return model


def frozen_model(path, tokenizer, what: str, device):
    """The model at `path`, checked as load_model_checked does, on `device`, in eval mode and with no
    gradients: DPO's and GRPO's reference model, distillation's teacher."""
    model = load_model_checked(path, tokenizer, what)
    model.requires_grad_(False)
    model.eval()
    return model.to(device)


def fresh_model(model_args: dict, seed: int, tokenizer, what: str):
    """A newly initialised model (weights fixed by `seed`)."""
    from ..config import MiniMindConfig
    from ..model import MiniMindForCausalLM

    config = MiniMindConfig(**model_args)
    check_vocab(config.vocab_size, tokenizer, what)
    torch.manual_seed(seed)
    return MiniMindForCausalLM(config)


def load_run_tokenizer(cfg):
    """--tokenizer if given, else the one saved with --init, else the profile's tokenizer.

    When both --tokenizer and the --init model's own tokenizer exist they must be identical.
    """
    init_tok = None
    if cfg.init is not None and cfg.stage != "pretrain":
        d = model_dir(cfg.init)
        if (d / "tokenizer.json").exists():  # an adapter folder may have none: then the profile's
            init_tok = _load_tokenizer(d, "--init")
    if cfg.tokenizer is None:
        return init_tok if init_tok is not None else _load_tokenizer(cfg.profile_tokenizer, "tokenizer")
    tok = _load_tokenizer(cfg.tokenizer, "--tokenizer")
    if init_tok is not None and tok.get_vocab() != init_tok.get_vocab():
        raise TrainError(f"--tokenizer {cfg.tokenizer} differs from the tokenizer saved with --init {cfg.init} "
                         "(vocabulary mismatch); drop --tokenizer to use the model's own")
    return tok


def _load_tokenizer(path, what):
    from ..tokenizer import load_tokenizer

    try:
        return load_tokenizer(path)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise TrainError(f"{what} {e}") from None


# ----------------------------------------------------------------------------------------------
# data


def require_file(path, what: str) -> Path:
    if path is None or not Path(path).is_file():
        raise TrainError(f"{path}: {what} not found (pass --data FILE, or create the sample corpus with "
                         "`python -m minimind_core data sample`)")
    return Path(path)


def packed_dataset(path, tokenizer, seq_len: int, env, cache_dir=None, progress=True):
    """Pretraining text as blocks of seq_len tokens; rank 0 tokenizes, the other ranks wait for its cache."""
    from ..datasets import PackedDataset, build_token_cache

    require_file(path, "pretraining data")
    if env.distributed and not env.is_main:
        env.barrier()
    cache = build_token_cache(path, tokenizer, cache_dir=cache_dir, progress=progress and env.is_main)
    if env.distributed and env.is_main:
        env.barrier()
    return PackedDataset(cache, seq_len)


def holdout_split(dataset, fraction: float):
    """(train, val): every round(1/fraction)-th example is held out for validation.

    A stride rather than the file's tail, so the held-out slice is drawn from the whole file
    (the sample corpus puts biographies, stories and Q&A pages in different parts). The split
    depends only on the dataset's length, so every rank and every resumed run agrees on it.
    `val` is None when nothing is held out.
    """
    from torch.utils.data import Subset

    if not fraction:
        return dataset, None
    stride = max(2, round(1.0 / fraction))
    n = len(dataset)
    val = list(range(stride - 1, n, stride))
    if not val or len(val) == n:
        return dataset, None
    train = [i for i in range(n) if i % stride != stride - 1]
    return Subset(dataset, train), Subset(dataset, val)


# ----------------------------------------------------------------------------------------------
# the tasks


@dataclass(frozen=True)
class Forward:
    """One micro-batch through a task."""

    sums: dict                                   # component -> loss summed over its units (a tensor)
    metrics: dict = field(default_factory=dict)  # more values to log (floats), e.g. DPO's reward accuracy


class Task:
    """What one stage trains and how its loss is made.

    components: weight of each loss component in the objective; a component's value is the
    sum returned by `forward` divided by its global count from `counts` (tokens, pairs, ...).
    primary: the component reported as "loss" (None: the weighted objective itself).
    sequences_per_example: sequences the model reads per example (a DPO pair: 2).
    """

    components: dict = {"ce": 1.0}
    primary: str | None = None
    sequences_per_example: int = 1

    def __init__(self, cfg, env, tokenizer):
        self.cfg, self.env, self.tokenizer = cfg, env, tokenizer
        self.balance = False  # a mixture-of-experts model also trains its router's balance loss
        self.val: Source | None = None   # the held-out slice that `sources()` set aside (val_loss)

    # model -------------------------------------------------------------------------------
    def watch_balance_loss(self, model) -> None:
        """For a mixture-of-experts model, add the router's balance loss to the objective.

        It becomes the component "aux" (one value per micro-batch, averaged over the step), while
        "loss" keeps reporting the cross-entropy. Dense models are unchanged.
        """
        if not getattr(model.config, "use_moe", False) or "ce" not in self.components:
            return
        self.balance = True
        self.components = {**self.components, "aux": 1.0}
        self.primary = self.primary or "ce"

    def build_model(self, resume_from: Path | None):
        """The model to train, on the CPU in fp32 (weights from `resume_from` when resuming)."""
        if resume_from is not None:
            return load_model_checked(resume_from, self.tokenizer, "resume checkpoint")
        return load_model_checked(self.cfg.init, self.tokenizer, "--init")

    def trainable_parameters(self, model):
        return [p for p in model.parameters() if p.requires_grad]

    def save_payload(self, model) -> dict:
        """kwargs for checkpoint.save_checkpoint: the model (or adapter) and the tokenizer."""
        return {"model": model, "tokenizer": self.tokenizer}

    # data --------------------------------------------------------------------------------
    def sources(self) -> dict:
        raise NotImplementedError

    def counts(self, micro: dict) -> dict:
        c = {"ce": n_targets(micro["main"]["labels"])}
        if self.balance:
            c["aux"] = 1
        return c

    def tokens(self, micro: dict) -> int:
        b = micro["main"]
        if "attention_mask" in b:
            return int(b["attention_mask"].sum())
        return b["input_ids"].numel()

    # loss --------------------------------------------------------------------------------
    def forward(self, model, micro: dict) -> Forward:
        b = micro["main"]
        out = model(input_ids=b["input_ids"])
        sums = {"ce": token_ce_sum(out.logits, b["labels"])}
        if self.balance:
            sums["aux"] = out.aux_loss
        return Forward(sums)

    @property
    def _progress(self) -> bool:
        return bool(self.cfg.progress and self.env.is_main)

    def _chat_source(self, what: str) -> Source:
        from ..datasets import SFTDataset, collate_pad

        cfg = self.cfg
        ds = SFTDataset(require_file(cfg.data, what), self.tokenizer, cfg.seq_len, progress=self._progress)
        return self._split(Source(ds, cfg.batch_size, collate_pad, name=str(cfg.data)))

    def _split(self, source: Source) -> Source:
        """Hold out cfg.val_fraction of `source` as self.val; the rest is trained on."""
        train, val = holdout_split(source.dataset, float(self.cfg.val_fraction))
        if val is not None:
            self.val = dataclasses.replace(source, dataset=val, name=f"{source.name} (held out)")
        return dataclasses.replace(source, dataset=train)


class PretrainTask(Task):
    def build_model(self, resume_from):
        if resume_from is not None or self.cfg.init is not None:
            return super().build_model(resume_from)
        return fresh_model(self.cfg.model, self.cfg.seed, self.tokenizer, "the new model (the profile's, or --model's)")

    def sources(self):
        cfg = self.cfg
        ds = packed_dataset(cfg.data, self.tokenizer, cfg.seq_len, self.env, cfg.cache_dir, self._progress)
        return {"main": self._split(Source(ds, cfg.batch_size, name=str(cfg.data)))}


class SFTTask(Task):
    """Supervised fine-tuning on chat data; optionally one pretraining batch mixed into each step.

    Mixing (the mix_pretrain knob) keeps a small model's pretrained knowledge extractable:
    without it a few epochs of SFT memorise the SFT conversations and forget the rest.
    """

    def __init__(self, cfg, env, tokenizer):
        super().__init__(cfg, env, tokenizer)
        self.mix = bool(cfg.sft.mix_pretrain)
        if self.mix:
            self.components = {"ce": 1.0, "pretrain": 1.0}
            self.primary = "ce"

    def sources(self):
        sources = {"main": self._chat_source("SFT data")}
        if self.mix:
            cfg = self.cfg
            path = Path(cfg.sft.mix_pretrain)  # resolve_config made True the profile's pretraining file
            pds = packed_dataset(path, self.tokenizer, cfg.seq_len, self.env, cfg.cache_dir, self._progress)
            sources["pretrain"] = Source(pds, int(cfg.sft.mix_batch_size), name=str(path), seed_offset=1)
        return sources

    def counts(self, micro):
        c = super().counts(micro)
        if self.mix:
            c["pretrain"] = n_targets(micro["pretrain"]["labels"])
        return c

    def forward(self, model, micro):
        out = super().forward(model, micro)
        if self.mix:
            b = micro["pretrain"]
            out.sums["pretrain"] = token_ce_sum(model(input_ids=b["input_ids"]).logits, b["labels"])
        return out


class LoRATask(Task):
    """LoRA: adapters on the frozen SFT model; only the adapter is trained and saved.

    The checkpoint holds adapter.safetensors and adapter_config.json, whose "base" names the
    model folder the adapter belongs to (checkpoint.load_model puts the two together; lora.merge
    folds the adapter into the weights for export).
    """

    def build_model(self, resume_from):
        from .. import lora

        self.base_dir = model_dir(self.cfg.init)
        model = load_model_checked(self.base_dir, self.tokenizer, "--init")
        for p in model.parameters():
            p.requires_grad_(False)
        knobs = self.cfg.lora
        torch.manual_seed(self.cfg.seed)
        lora.apply_lora(model, rank=int(knobs.rank), alpha=None if knobs.alpha is None else float(knobs.alpha),
                        targets=knobs.targets or "all")  # freezes everything but the adapters
        if resume_from is not None:
            from safetensors.torch import load_file

            lora.load_lora(model, load_file(str(Path(resume_from) / ckpt.ADAPTER_WEIGHTS)))
        return model

    def sources(self):
        return {"main": self._chat_source("SFT data")}

    def save_payload(self, model):
        from .. import lora

        config = {**lora.adapter_config(model), "base": str(Path(self.base_dir).resolve()),
                  "model_type": "minimind-lora"}
        return {"adapter": (lora.lora_state_dict(model), config), "tokenizer": self.tokenizer}


class DPOTask(Task):
    """DPO: the policy starts from --init; a frozen copy of it is the reference model.

    With the sft_weight knob > 0 the chosen replies' cross-entropy joins the loss ("chosen_ce",
    per token): plain DPO can raise the margin by pushing both replies down, and on a few narrow
    pairs a small model then forgets its answer format; the SFT term holds the chosen reply up.
    """

    components = {"dpo": 1.0}
    sequences_per_example = 2

    def __init__(self, cfg, env, tokenizer):
        super().__init__(cfg, env, tokenizer)
        self.sft_weight = float(cfg.dpo.sft_weight)
        if self.sft_weight > 0:
            self.components = {"dpo": 1.0, "chosen_ce": self.sft_weight}
            self.primary = "dpo"

    def build_model(self, resume_from):
        model = super().build_model(resume_from)
        self.ref = frozen_model(self.cfg.init, self.tokenizer, "--init", self.env.device)
        return model

    def sources(self):
        from ..datasets import DPODataset, collate_dpo

        cfg = self.cfg
        ds = DPODataset(require_file(cfg.data, "DPO data"), self.tokenizer, cfg.seq_len, progress=self._progress)
        return {"main": Source(ds, cfg.batch_size, collate_dpo, name=str(cfg.data))}

    def counts(self, micro):
        c = {"dpo": int(micro["main"]["chosen_input_ids"].shape[0])}
        if self.sft_weight > 0:
            c["chosen_ce"] = n_targets(micro["main"]["chosen_labels"])
        return c

    def tokens(self, micro):
        b = micro["main"]
        return int((b["chosen_labels"] != IGNORE_INDEX).sum() + (b["rejected_labels"] != IGNORE_INDEX).sum())

    def forward(self, model, micro):
        b = micro["main"]
        ids = torch.cat([b["chosen_input_ids"], b["rejected_input_ids"]])
        labels = torch.cat([b["chosen_labels"], b["rejected_labels"]])
        mode, n = self.cfg.dpo.score, b["chosen_input_ids"].shape[0]
        logits = model(input_ids=ids).logits
        logp = sequence_logprobs(logits, labels, reduction=mode)
        with torch.no_grad():
            ref_logp = sequence_logprobs(self.ref(input_ids=ids).logits, labels, reduction=mode)
        loss, m = dpo_loss(logp[:n], logp[n:], ref_logp[:n], ref_logp[n:], beta=float(self.cfg.dpo.beta))
        # summed over pairs (and chosen tokens); the loop divides by the global counts
        sums = {"dpo": loss * n}
        if self.sft_weight > 0:
            sums["chosen_ce"] = token_ce_sum(logits[:n], b["chosen_labels"])
        return Forward(sums, {"reward_accuracy": m["accuracy"], "reward_margin": m["margin"]})


class DistillTask(Task):
    """Knowledge distillation: a student learns from a teacher's softened distribution.

    L = alpha * CE + (1 - alpha) * T^2 * KL(teacher || student) over the trained
    positions. The teacher (`teacher=` / --teacher) and the student share the tokenizer and may
    differ in size. With the `student_layers` knob the student starts as those of the teacher's
    layers (with its embeddings, final norm and head; --init is then not used); else from --init
    when given; else it is a fresh model of the profile's size with the `student` knob's changes.
    """

    components = {"distill": 1.0}

    def build_model(self, resume_from):
        knobs = self.cfg.distill
        if not knobs.teacher:
            raise TrainError("distill needs a teacher: pass --teacher DIR (a model or run folder; "
                             "MiniMind used a 768x16 full-SFT model)")
        self.teacher = teacher = frozen_model(knobs.teacher, self.tokenizer, "--teacher", self.env.device)
        if resume_from is not None:
            student = super().build_model(resume_from)
        elif knobs.student_layers is not None:  # wins over --init: the full recipe's init is the SFT model
            student = _student_from_layers(teacher, knobs)
        elif self.cfg.init is not None:
            student = super().build_model(None)
        else:
            student = fresh_model({**self.cfg.model, **knobs.student}, self.cfg.seed, self.tokenizer,
                                  "the student model")
        if student.config.vocab_size != teacher.config.vocab_size:
            raise TrainError(f"student vocab_size {student.config.vocab_size} != teacher vocab_size "
                             f"{teacher.config.vocab_size}: they must share a tokenizer")
        return student

    def sources(self):
        """Chat data (SFT schema: the replies are trained) or plain text (pretrain schema: packed
        blocks, every position trained), e.g. a transfer set the teacher has not memorised."""
        from ..jsonl import detect_stage

        cfg = self.cfg
        if detect_stage(require_file(cfg.data, "distillation data")) != "pretrain":
            return {"main": self._chat_source("distillation data")}
        ds = packed_dataset(cfg.data, self.tokenizer, cfg.seq_len, self.env, cfg.cache_dir, self._progress)
        return {"main": self._split(Source(ds, cfg.batch_size, name=str(cfg.data)))}

    def counts(self, micro):
        return {"distill": n_targets(micro["main"]["labels"])}

    def forward(self, model, micro):
        b = micro["main"]
        s_logits = model(input_ids=b["input_ids"]).logits
        n = n_targets(b["labels"])
        if n == 0:  # nothing to learn in this micro-batch; keep the graph for DDP
            return Forward({"distill": s_logits.sum() * 0.0})
        with torch.no_grad():
            t_logits = self.teacher(input_ids=b["input_ids"]).logits
        knobs = self.cfg.distill
        loss, parts = distill_loss(s_logits, t_logits, b["labels"], alpha=float(knobs.alpha),
                                   temperature=float(knobs.temperature), return_parts=True)
        return Forward({"distill": loss * n}, {"ce": parts["ce"], "kl": parts["kl"]})  # summed over target tokens


def _student_from_layers(teacher, knobs):
    """The student as some of the teacher's layers (the `student_layers` knob): their number sets
    its depth, so the `student` knob's num_hidden_layers (a fresh student's) does not apply."""
    from ..distill import student_from_teacher

    changes = {k: v for k, v in knobs.student.items() if k != "num_hidden_layers"}
    try:
        student = student_from_teacher(teacher, tuple(knobs.student_layers), **changes)
    except ValueError as e:
        raise TrainError(f"student_layers: {e}") from None
    return student.cpu().train()


class GRPOTask(Task):
    """GRPO: the policy starts from --init, samples a group of replies per prompt, and learns from
    how each reply's rule-based reward compares with its group's (grpo.py); a frozen copy of
    --init is the reference of the KL term.

    The main stream yields prompts; the rollout (the sampled replies and their rewards) is drawn
    by the policy the first time the loop looks at a micro-batch, in `counts` (the loop needs the
    number of replies or reply tokens before any forward pass), and kept in the micro-batch for
    `forward`. All micro-batches of a step are sampled before the update, by the same policy, so
    each group is used for exactly one update: the probability ratio is 1 at that update (its
    gradient is the policy gradient) and the clip never binds; clip_fraction says so in the log.
    """

    components = {"grpo": 1.0}

    def build_model(self, resume_from):
        model = super().build_model(resume_from)
        self.ref = frozen_model(self.cfg.init, self.tokenizer, "--init", self.env.device)
        self.policy = model          # the module itself (not its DDP wrapper) samples the replies
        return model

    def sources(self):
        from ..course import grpo_prompts, grpo_prompts_path
        from ..grpo import PromptDataset, collate_prompts

        cfg = self.cfg
        if cfg.profile != "full" and cfg.data == grpo_prompts_path(cfg.profile):
            grpo_prompts(cfg.profile)  # the sample world's training-half questions, written once (no model needed)
        ds = PromptDataset(require_file(cfg.data, "GRPO prompts"), self.tokenizer, max_prompt_len=cfg.seq_len)
        return {"main": Source(ds, cfg.batch_size, collate_prompts, name=str(cfg.data))}

    def rollout(self, micro):
        b = micro["main"]
        if "rollout" not in b:
            from ..grpo import sample_rollout

            k = self.cfg.grpo
            b["rollout"] = sample_rollout(self.policy, self.tokenizer, b["prompt_ids"], b["records"],
                                          int(k.group_size), int(k.max_new_tokens), float(k.temperature),
                                          None if k.top_p is None else float(k.top_p), float(k.format_weight))
        return b["rollout"]

    def counts(self, micro):
        r = self.rollout(micro)
        return {"grpo": r.input_ids.shape[0] if self.cfg.grpo.loss_agg == "sequence" else r.reply_tokens}

    def tokens(self, micro):
        from ..tokenizer import PAD_ID

        return int((self.rollout(micro).input_ids != PAD_ID).sum())  # prompt and reply tokens, not the padding

    def forward(self, model, micro):
        from ..grpo import group_advantages, grpo_token_loss
        from ..losses import token_logprobs

        r, k, dev = self.rollout(micro), self.cfg.grpo, self.env.device
        ids, labels = r.input_ids.to(dev), r.labels.to(dev)
        logp, mask = token_logprobs(model(input_ids=ids).logits, labels)
        with torch.no_grad():
            ref_logp, _ = token_logprobs(self.ref(input_ids=ids).logits, labels)
        adv = group_advantages(r.rewards, r.group_size).to(dev)
        # the replies were sampled by this very policy: old_logp is logp, without its gradient
        per_token, clipped, kl = grpo_token_loss(logp, logp.detach(), ref_logp, adv, float(k.beta), float(k.clip_eps))
        m = mask.float()
        if k.loss_agg == "sequence":   # summed over replies here; the loop divides by their global count
            total = ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1)).sum()
        else:
            total = (per_token * m).sum()
        n_tok = m.sum().clamp(min=1)
        groups = r.rewards.view(-1, r.group_size)
        return Forward({"grpo": total}, {
            "reward": float(r.rewards.mean()), "sample_accuracy": float(r.correct.float().mean()),
            "in_format": float(r.closed.float().mean()), "kl": float((kl.detach() * m).sum() / n_tok),
            "clip_fraction": float((clipped & mask).sum() / n_tok), "reply_tokens": float(m.sum(-1).mean()),
            "groups_learning": float((groups.std(dim=1) > 0).float().mean())})


TASKS = {"pretrain": PretrainTask, "sft": SFTTask, "lora": LoRATask, "dpo": DPOTask, "distill": DistillTask,
         "grpo": GRPOTask}


__all__ = ["holdout_split", "Task", "Forward", "PretrainTask", "SFTTask", "LoRATask", "DPOTask", "DistillTask", "GRPOTask", "TASKS",
           "load_run_tokenizer", "load_model_checked", "model_dir", "check_vocab"]

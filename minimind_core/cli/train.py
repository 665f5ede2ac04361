"""The `train` command of `python -m minimind_core`.

    python -m minimind_core train pretrain --profile tiny
    python -m minimind_core train sft --init runs/tiny/pretrain
    torchrun --nproc_per_node 8 -m minimind_core train sft --profile full

Every `train` option defaults to the profile's recipe for the stage (minimind_core.profiles).
"""
from __future__ import annotations

import os
import sys
import traceback

from ..errors import MiniMindError
from ..presets import PRESET_NAMES
from ..profiles import PROFILE_NAMES, STAGES
from .errors import CLIError


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a stage: pretrain, sft, lora, dpo, distill or grpo",
                       description="Train one stage. Unset options come from the profile's recipe; "
                                   "works the same under torchrun (one process per GPU).")
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                   help="size of everything (default: MINIMIND_PROFILE, else full on CUDA, tiny on CPU)")
    g = p.add_argument_group("data and models")
    g.add_argument("--data", default=None, help="training JSONL file")
    g.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the --init model's own, "
                                                     "else the profile's)")
    g.add_argument("--init", default=None, help="model or run folder to start from (run folder: its newest "
                                                "checkpoint); default: the profile's previous stage")
    g.add_argument("--out", default=None, help="run folder (default: runs/<profile>/<stage>)")
    g.add_argument("--teacher", default=None, help="distill: the teacher's model or run folder")
    g.add_argument("--model", choices=PRESET_NAMES, default=None,
                   help="the shape of a new model (pretrain, or distill's student), in place of the profile's")
    o = p.add_argument_group("schedule")
    o.add_argument("--epochs", type=int, default=None)
    o.add_argument("--max-steps", type=int, default=None,
                   help="optimizer steps to train (also the length of the LR schedule)")
    o.add_argument("--batch-size", type=int, default=None, help="sequences per micro-batch per device")
    o.add_argument("--accum", type=int, default=None, help="micro-batches per optimizer step")
    o.add_argument("--lr", type=float, default=None, help="peak learning rate")
    o.add_argument("--warmup", type=int, default=None, help="linear warmup steps")
    o.add_argument("--seq-len", type=int, default=None)
    o.add_argument("--seed", type=int, default=None)
    r = p.add_argument_group("run")
    r.add_argument("--log-every", type=int, default=None)
    r.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (0: only at the end)")
    r.add_argument("--val-fraction", type=float, default=None,
                   help="share of the data held out to measure val_loss (0: none; default: the recipe's)")
    r.add_argument("--val-every", type=int, default=None, help="val_loss at every N-th logged step (default 5)")
    r.add_argument("--keep", type=int, default=None, help="complete checkpoints to keep (default 2)")
    r.add_argument("--resume", action="store_true", help="continue from the run folder's newest checkpoint")
    r.add_argument("--overwrite", action="store_true", help="start over in a run folder that holds a run")
    r.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], default=None,
                   help="auto: bf16 on GPUs that have it, fp16 + loss scaling on older GPUs, fp32 on CPU")
    r.add_argument("--compile", action="store_true", help="torch.compile the model")
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    r.add_argument("--num-workers", type=int, default=None, help="data-loader workers (default: 0 on CPU)")
    r.add_argument("--cache-dir", default=None, help="where tokenized pretraining data is cached "
                                                      "(default: data/cache)")
    r.add_argument("--threads", type=int, default=None, help="CPU threads per process")
    r.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    k = p.add_argument_group("stage knobs")
    k.add_argument("--lora-rank", type=int, default=None, help="lora: adapter rank")
    k.add_argument("--lora-alpha", type=float, default=None, help="lora: adapter scale alpha (scale = alpha / rank)")
    k.add_argument("--beta", type=float, default=None, help="dpo: strength of the KL anchor")
    k.add_argument("--score", choices=["mean", "sum"], default=None,
                   help="dpo: sequence score = mean (MiniMind2) or sum of token log-probs")
    k.add_argument("--sft-weight", type=float, default=None,
                   help="dpo: weight of the chosen replies' cross-entropy added to the loss (0: plain DPO)")
    k.add_argument("--alpha", type=float, default=None, help="distill: weight of the hard-label loss")
    k.add_argument("--temperature", type=float, default=None, help="distill: softmax temperature")
    k.add_argument("--student-layers", default=None, metavar="I,J,...",
                   help="distill: start the student as these of the teacher's layers (e.g. 0,2)")
    k.add_argument("--group-size", type=int, default=None, help="grpo: replies sampled per prompt")
    k.add_argument("--kl-beta", type=float, default=None, help="grpo: weight of the KL term to the reference")
    k.add_argument("--clip-eps", type=float, default=None, help="grpo: the clip range of the probability ratio")
    k.add_argument("--max-new-tokens", type=int, default=None, help="grpo: reply budget of the rollouts")
    k.add_argument("--mix-pretrain", dest="mix_pretrain", action="store_true", default=None,
                   help="sft: mix one pretraining batch into each step")
    k.add_argument("--no-mix-pretrain", dest="mix_pretrain", action="store_false")
    p.set_defaults(handler=run_train)


def train_kwargs(args) -> dict:
    """The train() overrides that the parsed arguments ask for (None = profile default).

    The flags keep MiniMind's short names; train() takes unambiguous ones: --lora-rank is
    lora_rank, --beta dpo_beta, --alpha distill_alpha, --temperature distill_temperature.
    """
    kw = dict(data=args.data, tokenizer=args.tokenizer, init=args.init, out=args.out, epochs=args.epochs,
              max_steps=args.max_steps, batch_size=args.batch_size, accum=args.accum, lr=args.lr,
              warmup=args.warmup, seq_len=args.seq_len, seed=args.seed, log_every=args.log_every,
              save_every=args.save_every, val_fraction=args.val_fraction,
              val_every=args.val_every, keep=args.keep, dtype=args.dtype, device=args.device,
              num_workers=args.num_workers, cache_dir=args.cache_dir, threads=args.threads, teacher=args.teacher,
              lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, dpo_beta=args.beta, dpo_score=args.score,
              dpo_sft_weight=args.sft_weight,
              distill_alpha=args.alpha, distill_temperature=args.temperature, mix_pretrain=args.mix_pretrain,
              grpo_group_size=args.group_size, grpo_beta=args.kl_beta, grpo_clip_eps=args.clip_eps,
              grpo_max_new_tokens=args.max_new_tokens)
    if (args.lora_alpha is not None and args.stage != "lora") or (args.alpha is not None and args.stage != "distill"):
        raise CLIError("--lora-alpha is for the lora stage and --alpha for distill")
    if args.student_layers is not None:
        kw["student_layers"] = _layer_list(args.student_layers)
    if args.model is not None:
        kw["model"] = args.model
    for flag in ("resume", "overwrite", "compile"):
        if getattr(args, flag):
            kw[flag] = True
    if args.no_progress:
        kw["progress"] = False
    return {k: v for k, v in kw.items() if v is not None}


def _layer_list(text: str) -> tuple:
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise CLIError(f"--student-layers {text!r}: expected layer indices separated by commas, e.g. 0,2") from None
    return layers


def run_train(args) -> int:
    """`python -m minimind_core train STAGE ...`; under torchrun a failing rank ends the job."""
    from ..train import train

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = os.environ.get("RANK", "0")
    try:
        if args.stage == "dpo" and args.data is None and not distributed:
            from ..course import dpo_pairs

            dpo_pairs(args.profile)  # the sample profiles' pairs are made once from the SFT model's own replies
        if args.stage == "grpo" and args.data is None:
            from ..course import grpo_prompts

            grpo_prompts(args.profile)  # the sample profiles' prompts: the training half's questions (no model)
        train(args.stage, profile=args.profile, **train_kwargs(args))
    except (MiniMindError, FileNotFoundError) as e:
        if distributed:
            _die(f"error (rank {rank}): {e}", code=2)
        raise CLIError(str(e)) from None
    except KeyboardInterrupt:
        if distributed:
            _die(f"interrupted (rank {rank})", code=130)
        raise
    except BaseException:  # noqa: BLE001
        if distributed:  # never leave the other ranks waiting in a collective: exit now, torchrun stops them
            _die(f"rank {rank} failed:\n{traceback.format_exc()}", code=1)
        raise
    return 0


def _die(msg: str, code: int):
    print(msg, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)

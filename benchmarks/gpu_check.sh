#!/usr/bin/env bash
# GPU check: run on a CUDA machine from the project root.
#
#   bash benchmarks/gpu_check.sh [STEPS]
#
# 1. the tests marked `gpu`;
# 2. STEPS (default 300) optimizer steps of the full profile's pretraining recipe, MiniMind2-Small
#    (25.83M parameters, vocab 6400), on the bundled sample corpus, with a 6400-token tokenizer
#    trained on that corpus first (so the model is exactly the full one; the sample corpus is
#    small, so the loss says little: this checks speed, memory and the bf16/fused/compile paths);
#    reports tokens/s, MFU and peak memory, eager and --compile;
# 3. the same for 2 processes with DDP (NCCL) when the machine has 2 or more GPUs;
# 4. the throughput benchmark (padded vs packed, eager vs compiled, fp32 vs bf16) on the full model.
set -euo pipefail
STEPS=${1:-300}
PY=${PYTHON:-python}
WORK=${GPU_CHECK_DIR:-runs/gpu_check}
mkdir -p "$WORK"
export MINIMIND_PROFILE=full

"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA GPU visible"
p = torch.cuda.get_device_properties(0)
print(f"GPU: {p.name}, {p.total_memory / 2**30:.1f} GiB, {torch.cuda.device_count()} device(s), "
      f"bf16: {torch.cuda.is_bf16_supported()}, torch {torch.__version__}")
PY

echo "== 1. gpu-marked tests"
"$PY" -m pytest -q -m gpu tests || { rc=$?; [ $rc -eq 5 ] && echo "(no gpu-marked tests collected)" || exit $rc; }

echo "== 2. tokenizer with the full vocabulary (6400) on the sample corpus"
if [ ! -f "$WORK/tokenizer_6400/tokenizer.json" ]; then
  "$PY" -m minimind_core tokenizer train --data minimind_core/sample/pretrain.jsonl --vocab-size 6400 --out "$WORK/tokenizer_6400"
fi

report() {  # report RUN_DIR NPROC: tokens/s, MFU and peak memory from the run's metrics
  "$PY" - "$1" "$2" <<'PY'
import json, sys
from minimind_core.checkpoint import read_metrics
from minimind_core.profiles import get_profile
run, nproc = sys.argv[1], int(sys.argv[2])
rows = read_metrics(run)
info = json.load(open(f"{run}/run.json"))
cfg = get_profile("full").model_config()
n_params = 25_829_888
L, T, h = cfg.num_hidden_layers, info["seq_len"], cfg.hidden_size
flops_per_token = 6 * n_params + 12 * L * h * T          # model FLOPs per trained token (fwd + bwd)
steady = rows[len(rows) // 2:]                           # skip warm-up / compilation
tps = sum(r["tokens_per_s"] for r in steady) / len(steady)
import torch
name = torch.cuda.get_device_name(0)
peak = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "4090": 165e12, "3090": 71e12, "L40": 181e12,
        "A10": 125e12, "V100": 125e12, "T4": 65e12}
pk = next((v for k, v in peak.items() if k in name), None)
mfu = f"{100 * tps * flops_per_token / (pk * nproc):.1f}%" if pk else "n/a (unknown peak for this GPU)"
print(f"{run}: {len(rows)} logged steps, loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}, "
      f"{tps:,.0f} tokens/s ({nproc} GPU), MFU {mfu} (dense bf16 peak)")
PY
}

peak_mem() {  # peak_mem STEPS OUT [extra args]: one run with peak-memory measurement
  local out=$2; shift 2
  "$PY" - "$STEPS" "$out" "$WORK/tokenizer_6400" "$@" <<'PY'
import sys, torch
from minimind_core.train import train
steps, out, tok, *extra = sys.argv[1:]
torch.cuda.reset_peak_memory_stats()
r = train("pretrain", profile="full", data="minimind_core/sample/pretrain.jsonl", tokenizer=tok, out=out,
          max_steps=int(steps), log_every=10, save_every=0, overwrite=True, progress=False,
          compile="--compile" in extra)
print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB; wall {r.wall_time:.0f}s; "
      f"final loss {r.final_loss:.3f}")
PY
}

echo "== 3. full-profile pretraining, eager, bf16, batch 32 x accum 8 x 768"
peak_mem "$STEPS" "$WORK/pretrain_eager"
report "$WORK/pretrain_eager" 1

echo "== 4. the same with --compile"
peak_mem "$STEPS" "$WORK/pretrain_compiled" --compile
report "$WORK/pretrain_compiled" 1

echo "== 5. resume: 20 more steps from the eager run's checkpoint"
"$PY" -m minimind_core train pretrain --profile full --data minimind_core/sample/pretrain.jsonl \
  --tokenizer "$WORK/tokenizer_6400" --out "$WORK/pretrain_eager" --max-steps $((STEPS + 20)) --resume --no-progress \
  --log-every 10 | tail -3

NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ]; then
  echo "== 6. DDP: 2 processes (NCCL), batch 32 per GPU, accum 4 (the same global batch)"
  "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m minimind_core train pretrain --profile full \
    --data minimind_core/sample/pretrain.jsonl --tokenizer "$WORK/tokenizer_6400" --out "$WORK/pretrain_ddp" \
    --max-steps "$STEPS" --accum 4 --log-every 10 --overwrite --no-progress | tail -3
  report "$WORK/pretrain_ddp" 2
else
  echo "== 6. DDP skipped: $NGPU GPU"
fi

echo "== 7. throughput: padded vs packed, eager vs compiled, fp32 vs bf16 (full model)"
"$PY" benchmarks/train_throughput.py --profile full --tokenizer "$WORK/tokenizer_6400" --steps 30 --warmup 5

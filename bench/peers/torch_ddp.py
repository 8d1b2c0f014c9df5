#!/usr/bin/env python3
"""PyTorch DistributedDataParallel peer of bench/dist_train.ts: data-parallel float32 training of the
Llama-shaped decoder of ../shared/bench/torch_llama_bench.py (imported, not copied) on gloo.

Two layouts of one global batch (--batch rows of --seq tokens, cut into --micro-batches equal
micro-batches, as bench/dist_train.ts cuts it):
  under torchrun (WORLD_SIZE set): DDP, each rank accumulates its micro-batches / WORLD_SIZE share
      (DDP's no_sync on all but the last), gradients all-reduced by DDP's buckets (--bucket-mb,
      torch's default 25) during the last backward;
  as one process: the same global batch by gradient accumulation over all its micro-batches.
Each step: forward, cross-entropy (mean over the micro-batch's targets), backward, clip the global
norm to 1, AdamW (lr 1e-4, weight decay 0.01 on matrices, none on norms: Kestrel's decayParamGroups),
zero_grad. The tokens are bench/dist_train.ts's synthetic corpus (row g of the run: token t is
(g*131 + t*17 + (t*t)%7) % vocab), so both frameworks see the same batches; the weights are random
(seeded alike on every rank: DDP broadcasts rank 0's at construction anyway).

Start it with torchrun:
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 -m torch.distributed.run --standalone --nproc_per_node 2 \
      --redirects 9:2 --tee 9:2 bench/peers/torch_ddp.py --shared ../shared/bench --threads 1
(Debian's torch 1.13 on Python 3.11: torchrun's default "--redirects 0" parses to None, because
Python 3.11's IntFlag no longer iterates its zero member, and the launcher crashes; a mapping for a
local rank that does not exist, 9:2, leaves every real rank unredirected.)
or alone: /usr/bin/python3 bench/peers/torch_ddp.py --shared ../shared/bench --threads 2

Rank 0 prints one JSON line: tokens_per_s (global tokens / median step time, the step time being
the slowest rank's, over the steps after --warmup), the per-step times, the CPU seconds of a step summed over ranks
(time.process_time: every thread of the process), the split of a step into
forward+backward (DDP's all-reduce overlaps backward and its last bucket is waited for inside
backward) and clip+optimizer, the losses, and every rank's peak RSS (MiB, ru_maxrss).
"""
import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--shared", required=True, help="the folder holding torch_llama_bench.py")
ap.add_argument("--config", default="smol135m", help="a torch_llama_bench.py CONFIGS name (the model shape)")
ap.add_argument("--seq", type=int, default=64, help="tokens per row")
ap.add_argument("--batch", type=int, default=2, help="global batch in rows")
ap.add_argument("--micro-batches", type=int, default=2, help="micro-batches per global batch (a multiple of WORLD_SIZE)")
ap.add_argument("--steps", type=int, default=4, help="measured steps")
ap.add_argument("--warmup", type=int, default=1, help="steps before the measured ones")
ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads per process")
ap.add_argument("--bucket-mb", type=float, default=25.0, help="DDP bucket_cap_mb (torch's default 25)")
args = ap.parse_args()
sys.path.insert(0, args.shared)
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
import torch_llama_bench as tb  # noqa: E402

world = int(os.environ.get("WORLD_SIZE", "1"))
if world > 1:
    dist.init_process_group("gloo")
rank = dist.get_rank() if world > 1 else 0
M = args.micro_batches
if args.batch % M or M % world:
    sys.exit(f"torch_ddp.py: --batch {args.batch} must split into --micro-batches {M}, and {M} micro-batches over WORLD_SIZE {world} ranks")
micro_rows = args.batch // M
micro_per_rank = M // world

torch.set_num_threads(args.threads)
torch.manual_seed(0)
c = dict(tb.CONFIGS[args.config])
c["seq"], c["batch"] = args.seq, args.batch
c["tied"] = True  # bench/lib/decoder_bench.ts ties the head to the embedding at every shape
Llama, _ = tb.build_model_classes(torch)
model = Llama(c, max_seq=args.seq)
model.train()
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)
if world > 1:
    # the causal mask is a bool buffer, which gloo cannot broadcast; like cos/sin it is the same
    # constant on every rank, so DDP leaves it out of its start-up sync
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ["mask"])
net = DistributedDataParallel(model, bucket_cap_mb=args.bucket_mb) if world > 1 else model
V, T = c["vocab"], args.seq


def micro_batch(index):
    """bench/dist_train.ts's micro-batch `index` (counted over the run): rows of its synthetic corpus."""
    g = torch.arange(index * micro_rows, (index + 1) * micro_rows).view(-1, 1)
    t = torch.arange(T).view(1, -1)
    return (g * 131 + t * 17 + (t * t) % 7) % V


steps, fb, op, cpu, losses = [], [], [], [], []
for step in range(args.warmup + args.steps):
    t0, c0 = time.perf_counter(), time.process_time()
    total = 0.0
    for j in range(micro_per_rank):
        ids = micro_batch(step * M + rank * micro_per_rank + j)
        # DDP communicates on the last micro-batch only, as Kestrel's Trainer does
        with net.no_sync() if world > 1 and j < micro_per_rank - 1 else contextlib.nullcontext():
            logits = net(ids)
            # labels = the inputs, shifted inside the loss (Hugging Face's causal-LM convention)
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1)) / micro_per_rank
            loss.backward()
        total += loss.item()
    t1 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    t2 = time.perf_counter()
    losses.append(total)
    if step >= args.warmup:
        steps.append(t2 - t0)
        fb.append(t1 - t0)
        op.append(t2 - t1)
        cpu.append(time.process_time() - c0)

rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
if world > 1:
    # the step lasts as long as its slowest rank; the loss is the global batch's mean
    times = torch.tensor(steps, dtype=torch.float64)
    dist.all_reduce(times, op=dist.ReduceOp.MAX)
    steps = times.tolist()
    lt = torch.tensor(losses, dtype=torch.float64)
    dist.all_reduce(lt)
    losses = (lt / world).tolist()
    cpus = torch.tensor(cpu, dtype=torch.float64)
    dist.all_reduce(cpus)
    cpu = cpus.tolist()
    every = [None] * world
    dist.all_gather_object(every, rss)
    dist.destroy_process_group()
else:
    every = [rss]
if rank == 0:
    med = statistics.median(steps)
    print(json.dumps({
        "torch": torch.__version__, "backend": "gloo" if world > 1 else None, "world": world, "threads": torch.get_num_threads(),
        "config": args.config, "seq": T, "batch": args.batch, "micro_batch": micro_rows, "bucket_mb": args.bucket_mb if world > 1 else None,
        "params": sum(p.numel() for p in model.parameters()),
        "tokens_per_s": args.batch * T / med, "step_s_median": med, "step_s_all": steps,
        "cpu_s_per_step_median": statistics.median(cpu), "cpu_s_all": cpu,
        "fwd_bwd_s_median": statistics.median(fb), "clip_opt_s_median": statistics.median(op),
        "losses": losses, "peak_rss_mib_per_rank": every,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }), flush=True)

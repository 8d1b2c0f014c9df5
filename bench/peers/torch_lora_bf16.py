#!/usr/bin/env python3
"""PyTorch LoRA (or full) step under bf16 autocast: the peer of Kestrel's bf16 defaults (bench/lora.ts).

The model and the LoRA layer are ../shared/bench/torch_llama_bench.py's (imported, not copied): LoRA r 16
alpha 32 on q,k,v,o,gate,up,down, everything else frozen, AdamW on the adapters. One step = forward
(under torch.autocast('cpu', torch.bfloat16)), cross-entropy, backward, AdamW, zero_grad.
  --variant autocast     float32 weights, bf16 autocast (what `torch.autocast` alone gives)
  --variant bf16-base    the frozen weights (base Linears, embedding, norms) stored in bf16 as Unsloth
                         keeps them, LoRA A/B float32, bf16 autocast
  --variant full-autocast  full fine-tuning (no LoRA, every weight trained, AdamW on all) in float32
                         weights under bf16 autocast: the bf16 peer of Kestrel's full mode (mode "train")
Prints one JSON line: tokens_per_s, step_s_median, peak_rss_mib. Run with OMP_WAIT_POLICY=PASSIVE
and 2 threads (the driver's settings), OpenBLAS core type as the caller sets it.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--shared", required=True, help="the folder holding torch_llama_bench.py")
ap.add_argument("--config", default="smollm135m")
ap.add_argument("--variant", default="autocast", choices=["autocast", "bf16-base", "full-autocast"])
ap.add_argument("--steps", type=int, default=4)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
sys.path.insert(0, args.shared)
import torch  # noqa: E402
import torch_llama_bench as tb  # noqa: E402

torch.set_num_threads(args.threads)
torch.manual_seed(0)
c = dict(tb.CONFIGS[args.config])
Llama, LoRALinear = tb.build_model_classes(torch)
model = Llama(c, max_seq=c["seq"])
full = args.variant == "full-autocast"
if not full:
    tb.apply_lora(model, LoRALinear, torch)
if args.variant == "bf16-base":
    for p in model.parameters():
        if not p.requires_grad:
            p.data = p.data.to(torch.bfloat16)
trainable = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
model.train()
B, T, V = c["batch"], c["seq"], c["vocab"]
g = torch.Generator().manual_seed(1)
data = torch.randint(0, V, (B, T + 1), generator=g)
x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
times, losses = [], []
for i in range(args.warmup + args.steps):
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.float().view(-1, V), y.view(-1))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    losses.append(loss.item())
    if i >= args.warmup:
        times.append(time.perf_counter() - t0)
med = statistics.median(times)
print(json.dumps({
    "config": args.config, "mode": "train" if full else "lora", "variant": args.variant, "torch": torch.__version__, "threads": torch.get_num_threads(),
    "tokens_per_s": B * T / med, "step_s_median": med, "step_s_all": times, "loss_first_last": [losses[0], losses[-1]],
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
}))

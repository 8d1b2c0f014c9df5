"""MoE layer peer for bench/moe.ts: a Mixtral sparse block written in torch the way transformers
4.44's MixtralSparseMoeBlock computes it (softmax router in float32, top-k, renormalised weights,
a loop over experts with index_add_), forward + backward of sum(out * dy) on float32 CPU tensors,
optionally under torch.autocast("cpu", dtype=torch.bfloat16) ("autocast": "bf16": the Linears run
in bf16 through oneDNN, the softmax router in float32 as transformers asks);
the median seconds of `runs` iterations after one warm-up. Run with OMP_WAIT_POLICY=PASSIVE.

argv: JSON {"tokens": 1024, "dim": 512, "ffn": 1408, "experts": 8, "top_k": 2, "runs": 5, "threads": 2,
            "autocast": "bf16" (optional)}
prints one JSON line.
"""
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class Expert(nn.Module):
    def __init__(self, dim, ffn):
        super().__init__()
        self.w1 = nn.Linear(dim, ffn, bias=False)
        self.w2 = nn.Linear(ffn, dim, bias=False)
        self.w3 = nn.Linear(dim, ffn, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseBlock(nn.Module):
    def __init__(self, dim, ffn, experts, top_k):
        super().__init__()
        self.top_k = top_k
        self.num_experts = experts
        self.gate = nn.Linear(dim, experts, bias=False)
        self.experts = nn.ModuleList([Expert(dim, ffn) for _ in range(experts)])

    def forward(self, hidden):
        b, t, d = hidden.shape
        hidden = hidden.view(-1, d)
        logits = self.gate(hidden)
        weights = F.softmax(logits, dim=1, dtype=torch.float)
        weights, chosen = torch.topk(weights, self.top_k, dim=-1)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(hidden.dtype)
        out = torch.zeros((b * t, d), dtype=hidden.dtype)
        mask = F.one_hot(chosen, num_classes=self.num_experts).permute(2, 1, 0)
        for e in range(self.num_experts):
            slot, rows = torch.where(mask[e])
            y = self.experts[e](hidden[None, rows].reshape(-1, d)) * weights[rows, slot, None]
            out.index_add_(0, rows, y.to(hidden.dtype))
        return out.view(b, t, d), logits


def main():
    req = json.loads(sys.argv[1])
    torch.set_num_threads(req.get("threads", 2))
    torch.manual_seed(0)
    block = SparseBlock(req["dim"], req["ffn"], req["experts"], req["top_k"])
    x = torch.randn(1, req["tokens"], req["dim"], requires_grad=True)
    dy = torch.randn(1, req["tokens"], req["dim"])

    bf16 = req.get("autocast") == "bf16"

    def step():
        block.zero_grad(set_to_none=True)
        x.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, _ = block(x)
        (out.float() * dy).sum().backward()

    step()
    times = []
    for _ in range(req["runs"]):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "autocast": "bf16" if bf16 else None,
                      "seconds": statistics.median(times)}))


main()

"""AdamW step peer for bench/optim.ts: torch.optim.AdamW on float32 CPU tensors of the given
shapes, foreach=False (one tensor at a time) and foreach=True (multi-tensor _foreach ops), the
median seconds of `runs` steps after one warm-up step. Run with OMP_WAIT_POLICY=PASSIVE.

argv: JSON {"shapes": [[rows, cols] or [n], ...], "runs": 5, "threads": 2}; prints one JSON line.
"""
import json
import statistics
import sys
import time

import torch


def time_mode(shapes, runs, foreach):
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(*s, generator=gen)) for s in shapes]
    for p in params:
        p.grad = torch.randn(*p.shape, generator=gen)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, foreach=foreach)
    opt.step()  # warm-up: allocates exp_avg / exp_avg_sq
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t)
    del opt, params
    return statistics.median(times)


def main():
    req = json.loads(sys.argv[1])
    torch.set_num_threads(req.get("threads", 2))
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for foreach in (False, True):
        out["foreach" if foreach else "per_tensor"] = time_mode([tuple(s) for s in req["shapes"]], req["runs"], foreach)
    print(json.dumps(out))


main()

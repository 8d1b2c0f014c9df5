"""First-calls peer for bench/alloc.ts: a fresh process's first float32 matmuls in PyTorch on the
CPU (Debian's python3-torch), each into a new output tensor as a Kestrel op allocates one.

Usage: torch_first_calls.py N CALLS THREADS (run with OMP_WAIT_POLICY=PASSIVE, DESIGN.md's best
setting for this peer). Prints one JSON line {"ms": [...], "faults": [...], "torch": version}: each
call's milliseconds and minor page faults (getrusage); then checks the last product against
float64 dot products of four rows (after the timed calls, which must be the process's first).
"""
import json
import resource
import sys
import time

import torch


def main():
    n, calls, threads = (int(x) for x in sys.argv[1:4])
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(n, n, generator=gen) * 2 - 1
    b = torch.rand(n, n, generator=gen) * 2 - 1
    ms, faults = [], []
    c = None
    for _ in range(calls):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        c = torch.matmul(a, b)
        ms.append((time.perf_counter() - t0) * 1e3)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    ref = a[:4].double() @ b.double()
    if not torch.allclose(c[:4].double(), ref, rtol=1e-4, atol=1e-3):
        raise SystemExit("torch result wrong")
    print(json.dumps({"ms": ms, "faults": faults, "torch": torch.__version__}))


main()

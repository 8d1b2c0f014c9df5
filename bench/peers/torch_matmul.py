"""Half-precision GEMM peer for bench/bf16_gemm.ts: torch.matmul on the CPU (Debian's python3-torch,
which reaches oneDNN's bf16 kernels, AMX where the CPU has it).

The same line protocol as numpy_sgemm.py, so the benchmark interleaves peer and Kestrel timings
shape by shape: each stdin line is a JSON request
  {"threads": 2, "shape": {"name": "smol_up", "M": 256, "K": 576, "N": 1536, "transB": true},
   "dtype": "bfloat16", "min_time": 0.5}
and gets one JSON line back with the median seconds and GFLOP/s. The first line is a hello with
the torch version and its CPU capability. Timing: a float64 check of four rows, a warm-up, then
the median of at least 3 runs and about `min_time` seconds of runs. Run with OMP_WAIT_POLICY=PASSIVE
(the benchmark sets it) and torch.set_num_threads(threads), DESIGN.md's best settings for this peer.
"""
import json
import statistics
import sys
import time

import torch


def operands(shape, dtype, gen):
    m, k, n = shape["M"], shape["K"], shape["N"]
    a = (torch.rand(m, k, generator=gen) * 2 - 1).to(dtype)
    if shape.get("transB"):
        b = (torch.rand(n, k, generator=gen) * 2 - 1).to(dtype).t()  # a transposed view, as a Linear weight
    else:
        b = (torch.rand(k, n, generator=gen) * 2 - 1).to(dtype)
    return a, b


def time_one(shape, dtype, min_time, gen):
    a, b = operands(shape, dtype, gen)
    c = torch.matmul(a, b)  # warm-up, and a check against float64 on the same (rounded) inputs
    ref = a[:4].double() @ b.double()
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-4
    if not torch.allclose(c[:4].double(), ref, rtol=tol, atol=tol * shape["K"] ** 0.5):
        raise SystemExit(f"torch result wrong for {shape} {dtype}")
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < 200):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    flops = 2.0 * shape["M"] * shape["N"] * shape["K"]
    return {"median_s": med, "gflops": flops / med / 1e9, "runs": len(times)}


def main():
    gen = torch.Generator().manual_seed(0)
    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "unknown"
    print(json.dumps({"torch": torch.__version__, "cpu_capability": cap, "mkldnn": torch.backends.mkldnn.is_available()}), flush=True)
    dtypes = {"bfloat16": torch.bfloat16, "float32": torch.float32}
    for line in sys.stdin:
        req = json.loads(line)
        torch.set_num_threads(req["threads"])
        r = time_one(req["shape"], dtypes[req["dtype"]], req.get("min_time", 0.5), gen)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()

"""SGEMM peer for bench/sgemm.ts: float32 matmul through numpy's BLAS (OpenBLAS on Debian).

A line protocol, so the benchmark can interleave peer and Kestrel timings of each shape (this
machine is shared and its speed drifts): every stdin line is a JSON request
  {"threads": 2, "shape": {"name": "sq512", "M": 512, "K": 512, "N": 512, "transB": false}, "min_time": 0.5}
and gets one JSON line back with the median seconds and GFLOP/s. The first line written is a
hello with the numpy version and the BLAS as threadpoolctl reports it (including the core type
OpenBLAS picked). Timing mirrors the Kestrel side: validate, warm up, then the median of at
least 3 runs and about `min_time` seconds of runs.
"""
import json
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def operands(shape, rng):
    m, k, n = shape["M"], shape["K"], shape["N"]
    a = rng.uniform(-1, 1, size=(m, k)).astype(np.float32)
    if shape.get("transB"):
        b = rng.uniform(-1, 1, size=(n, k)).astype(np.float32).T  # a transposed view, as a Linear weight
    else:
        b = rng.uniform(-1, 1, size=(k, n)).astype(np.float32)
    return a, b


def time_one(shape, min_time, rng):
    a, b = operands(shape, rng)
    c = a @ b  # warm-up, and a check that BLAS gives the float64 answer
    ref = a[:4].astype(np.float64) @ b.astype(np.float64)
    if not np.allclose(c[:4], ref, rtol=1e-4, atol=1e-4 * np.sqrt(shape["K"])):
        raise SystemExit(f"numpy result wrong for {shape}")
    times = []
    out = np.empty_like(c)
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < 200):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    flops = 2.0 * shape["M"] * shape["N"] * shape["K"]
    return {"median_s": med, "gflops": flops / med / 1e9, "runs": len(times)}


def main():
    rng = np.random.default_rng(0)
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    print(json.dumps({"numpy": np.__version__, "blas": blas}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        with threadpool_limits(limits=req["threads"], user_api="blas"):
            r = time_one(req["shape"], req.get("min_time", 0.5), rng)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()

"""SGEMM peer for bench/sgemm.ts: float32 matmul through numpy's BLAS (OpenBLAS on Debian).

Usage: python3 numpy_sgemm.py '{"threads": [1, 2], "shapes": [{"name": "sq512", "M": 512, "K": 512,
"N": 512, "transB": false}], "min_time": 1.0}'. Prints one JSON object: the BLAS library as
threadpoolctl reports it (including the core type OpenBLAS picked) and, per thread count and shape,
the median seconds and GFLOP/s. Timing mirrors the Kestrel side: validate, warm up, then the
median of at least 3 runs and about `min_time` seconds of runs.
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
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < 50):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    flops = 2.0 * shape["M"] * shape["N"] * shape["K"]
    return {"name": shape["name"], "threads": None, "median_s": med, "gflops": flops / med / 1e9, "runs": len(times)}


def main():
    cfg = json.loads(sys.argv[1])
    rng = np.random.default_rng(0)
    results = []
    for threads in cfg["threads"]:
        with threadpool_limits(limits=threads, user_api="blas"):
            for shape in cfg["shapes"]:
                r = time_one(shape, cfg.get("min_time", 1.0), rng)
                r["threads"] = threads
                results.append(r)
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    print(json.dumps({"numpy": np.__version__, "blas": blas, "results": results}))


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The CUDA backend on a GPU machine, in one run (issue 18), from the repository root:
#  1. `kestrel doctor`: the GPU, driver and CUDA libraries found;
#  2. every CUDA kernel against the reference backend on odd shapes and strided inputs, the model
#     fixtures of ../shared/fixtures on the GPU against transformers' goldens, generation, and a few
#     training steps on CPU and GPU from the same seed (the test files, with KESTREL_TEST_GPU=1);
#  3. attention alone (bench/gpu/attention.ts: bf16 / float32 flash attention vs PyTorch SDPA) and
#     device time per kernel of a training step and of decoding (where the time goes);
#  4. the benchmarks side by side with this machine's PyTorch (bench/gpu/bench.ts), table last.
# Needs node (20+), `npm ci` done (the addon built), python3 with torch/transformers/peft for the peer
# (bench/gpu/pack.sh and unpack.sh carry node and the dependencies to a machine without them).
# Each section has a time limit (GPU_*_SECONDS) so that the whole run fits in under 10 minutes.
# Results: bench/results/gpu-doctor.txt, gpu-tests.json (+ .log), gpu-profile.json, gpu-bench.json.
set -uo pipefail
cd "$(dirname "$0")/../.."
RESULTS=bench/results
mkdir -p "$RESULTS"
export KESTREL_TEST_GPU=1 KESTREL_TEST_DEVICES=cuda KESTREL_CUDA_VERBOSE=${KESTREL_CUDA_VERBOSE:-1}
unset KESTREL_CUDA_EMULATE
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$PWD/.cache}

echo "== doctor"
node --import tsx -e "import('./src/cli/main.ts').then(async (m) => { process.exitCode = await m.run(['doctor']); })" 2>&1 | tee "$RESULTS/gpu-doctor.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$RESULTS/gpu-doctor.txt"

echo "== kernel modules (NVRTC, one process per module, into $XDG_CACHE_HOME)"
for m in native/cuda/kernels/*.cu; do
  node --import tsx bench/gpu/precompile.ts "$(basename "$m" .cu)" &
done
wait

echo "== tests on the GPU"
TESTS=(test/backend/kernels_*.test.ts test/backend/ops.test.ts test/backend/cuda_*.test.ts test/quant/quant_kernel.test.ts
       test/quant/quant_linear.test.ts test/optim/optim.test.ts test/models/decoder_fixtures.test.ts test/infer/generate_fixtures.test.ts
       test/infer/graph_decode.test.ts test/train/devices.test.ts test/cli/device.test.ts test/ops/half_compute.test.ts
       test/ops/linear_cross_entropy.test.ts test/lora/fused_lora.test.ts test/ops/paged_attention.test.ts
       test/infer/paged_generation.test.ts test/serve/batching_engine.test.ts)
start=$(date +%s)
timeout "${GPU_TEST_SECONDS:-180}" node --import tsx --test --test-concurrency="${GPU_TEST_CONCURRENCY:-8}" --test-reporter=tap "${TESTS[@]}" > "$RESULTS/gpu-tests.log" 2>&1
status=$?
secs=$(( $(date +%s) - start ))
node -e '
  const fs = require("fs");
  const log = fs.readFileSync(process.argv[1], "utf8");
  const n = (k) => Number((log.match(new RegExp("^# " + k + " (\\d+)", "m")) || [0, 0])[1]);
  const failed = [...log.matchAll(/^\s*not ok \d+ - (.*)$/gm)].map((m) => m[1]).filter((t) => !/# SKIP/.test(t));
  const out = { status: Number(process.argv[2]), seconds: Number(process.argv[3]), pass: n("pass"), fail: n("fail"), skipped: n("skipped"), failed };
  fs.writeFileSync(process.argv[4], JSON.stringify(out, null, 2) + "\n");
  console.log(`tests: ${out.pass} passed, ${out.fail} failed, ${out.skipped} skipped in ${out.seconds} s`);
  for (const f of failed.slice(0, 40)) console.log("  FAILED " + f);
' "$RESULTS/gpu-tests.log" "$status" "$secs" "$RESULTS/gpu-tests.json"

echo "== attention (bf16 tensor cores and float32 vs PyTorch SDPA)"
[ "${GPU_ATTENTION_SECONDS:-60}" = 0 ] || timeout "${GPU_ATTENTION_SECONDS:-60}" node --import tsx bench/gpu/attention.ts 2> "$RESULTS/gpu-attention.log"

echo "== device time per kernel (one training step, 16 decode tokens; KESTREL_CUDA_PROFILE)"
timeout "${GPU_PROFILE_SECONDS:-70}" node --import tsx bench/gpu/bench.ts --profile --seconds 60 --only smol-train,llama1b-decode 2> "$RESULTS/gpu-profile.log"

echo "== benchmarks (Kestrel vs this machine's PyTorch; the table is the last thing printed)"
timeout "${GPU_BENCH_SECONDS:-250}" node --import tsx bench/gpu/bench.ts --seconds "${GPU_BENCH_BUDGET:-235}" ${GPU_BENCH_ARGS:-} 2> "$RESULTS/gpu-bench.log"

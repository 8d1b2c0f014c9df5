// The GPU device: the driver API on one primary context, one non-blocking compute stream that
// every copy, launch and GEMM is queued on (so the caching allocator may reuse a block as soon
// as it is freed: later work is ordered after earlier work), and cuBLASLt for GEMM.
#include <cstring>
#include <map>
#include <tuple>
#include <unordered_map>

#include "api.h"
#include "device.h"
#include "staging.h"

namespace kestrel::cuda {

namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt workspace (what PyTorch gives it on Hopper)

int cuda_dtype(int kestrel_dtype) {
  switch (kestrel_dtype) {
    case 0: return CUDA_R_32F;
    case 1: return CUDA_R_64F;
    case 2: return CUDA_R_16F;
    case 3: return CUDA_R_16BF;
  }
  throw CudaError("gemm: unsupported dtype code " + std::to_string(kestrel_dtype));
}

uint32_t alignment_of(uint64_t p) {
  uint32_t a = 256;
  while (a > 1 && (p % a) != 0) a >>= 1;
  return a;
}

void check_blas(cublasStatus_t s, const char* what) {
  if (s != 0) throw CudaError(std::string("cuBLASLt ") + what + " failed with status " + std::to_string(s));
}

// A plan for one GEMM shape: descriptors plus the heuristic's algorithm, reused on every call.
// A shape the heuristic has no algorithm for keeps its error instead (so that asking again neither
// searches nor makes descriptors again).
struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  std::string error;
};

// ... and the bias's alignment (0: no bias epilogue)
using PlanKey = std::tuple<int, int, bool, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int64_t, uint32_t, uint32_t, uint32_t, uint32_t>;

class GpuDevice final : public Device {
 public:
  explicit GpuDevice(int ordinal) : a_(api()) {
    const LoadReport& r = load_report();
    if (!r.driver.found) throw CudaError("no CUDA driver: " + r.driver.error);
    check(a_.cuInit(0), "cuInit");
    int count = 0;
    check(a_.cuDeviceGetCount(&count), "cuDeviceGetCount");
    if (count == 0) throw CudaError("no CUDA device (the driver sees no GPU)");
    if (ordinal < 0 || ordinal >= count)
      throw CudaError("CUDA device " + std::to_string(ordinal) + " does not exist (" + std::to_string(count) + " found)");
    check(a_.cuDeviceGet(&dev_, ordinal), "cuDeviceGet");
    check(a_.cuDevicePrimaryCtxRetain(&ctx_, dev_), "cuDevicePrimaryCtxRetain");
    check(a_.cuCtxSetCurrent(ctx_), "cuCtxSetCurrent");
    char name[256] = {0};
    check(a_.cuDeviceGetName(name, sizeof(name) - 1, dev_), "cuDeviceGetName");
    info_.name = name;
    info_.cc_major = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
    info_.cc_minor = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
    info_.sm_count = attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
    info_.l2_bytes = size_t(attribute(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE));
    info_.smem_optin = size_t(attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN));
    check(a_.cuDeviceTotalMem(&info_.total_memory, dev_), "cuDeviceTotalMem");
    check(a_.cuStreamCreate(&stream_, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    if (a_.cublasLtMatmul) {
      check_blas(a_.cublasLtCreate(&blas_), "create");
      workspace_ = raw_alloc(kWorkspaceBytes);
      if (!workspace_) throw CudaError("out of device memory for the 32 MiB cuBLASLt workspace");
    }
  }

  const DeviceInfo& info() const override { return info_; }

  uint64_t raw_alloc(size_t bytes) override {
    CUdeviceptr p = 0;
    CUresult r = a_.cuMemAlloc(&p, bytes ? bytes : 1);
    if (r == CUDA_ERROR_OUT_OF_MEMORY) return 0;
    check(r, "cuMemAlloc");
    return p;
  }
  void raw_free(uint64_t p) override {
    synchronize();  // a block handed back to the driver must not be in use by queued work
    check(a_.cuMemFree(p), "cuMemFree");
  }
  void mem_info(size_t* free_bytes, size_t* total_bytes) override { check(a_.cuMemGetInfo(free_bytes, total_bytes), "cuMemGetInfo"); }

  // Large copies go through the pinned staging buffers (staging.h), on the compute stream like
  // every other copy: a block the caching allocator hands out may still be read or written by
  // queued kernels, and stream order is what keeps the copy after them.
  void upload(uint64_t dst, const void* src, size_t n) override {
    if (staged(n, chunk_) && staging_ready()) return staged_upload(staging_ops_, chunk_, dst, static_cast<const char*>(src), n);
    // From pageable memory the driver stages the bytes before returning, so src may go away at once.
    if (n) check(a_.cuMemcpyHtoDAsync(dst, src, n, stream_), "cuMemcpyHtoDAsync");
  }
  void download(void* dst, uint64_t src, size_t n) override {
    if (staged(n, chunk_) && staging_ready()) return staged_download(staging_ops_, chunk_, static_cast<char*>(dst), src, n);
    if (n) check(a_.cuMemcpyDtoHAsync(dst, src, n, stream_), "cuMemcpyDtoHAsync");
    synchronize();
  }
  void copy(uint64_t dst, uint64_t src, size_t n) override {
    if (n) check(a_.cuMemcpyDtoDAsync(dst, src, n, stream_), "cuMemcpyDtoDAsync");
  }
  void zero(uint64_t dst, size_t n) override {
    if (n) check(a_.cuMemsetD8Async(dst, 0, n, stream_), "cuMemsetD8Async");
  }

  uint64_t load_module(const std::string& name, const std::string& image) override {
    CUmodule m = nullptr;
    check(a_.cuModuleLoadData(&m, image.data()), ("cuModuleLoadData(" + name + ")").c_str());
    return reinterpret_cast<uint64_t>(m);
  }

  uint64_t function(uint64_t module, const std::string& name, std::vector<size_t>* sizes) override {
    CUfunction f = nullptr;
    check(a_.cuModuleGetFunction(&f, reinterpret_cast<CUmodule>(module), name.c_str()), ("cuModuleGetFunction(" + name + ")").c_str());
    if (sizes && a_.cuFuncGetParamInfo) {
      sizes->clear();
      for (size_t i = 0;; i++) {
        size_t off = 0, size = 0;
        if (a_.cuFuncGetParamInfo(f, i, &off, &size) != CUDA_SUCCESS) break;
        sizes->push_back(size);
      }
    }
    return reinterpret_cast<uint64_t>(f);
  }

  void set_max_dynamic_smem(uint64_t fn, unsigned bytes) override {
    check(a_.cuFuncSetAttribute(reinterpret_cast<CUfunction>(fn), CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, int(bytes)),
          "cuFuncSetAttribute(max dynamic shared memory)");
  }

  void launch(uint64_t fn, Dim3 grid, Dim3 block, unsigned smem, const void* args, size_t bytes) override {
    size_t size = bytes;
    void* config[] = {KESTREL_CU_LAUNCH_PARAM_BUFFER_POINTER, const_cast<void*>(args), KESTREL_CU_LAUNCH_PARAM_BUFFER_SIZE, &size,
                      KESTREL_CU_LAUNCH_PARAM_END};
    check(a_.cuLaunchKernel(reinterpret_cast<CUfunction>(fn), grid.x, grid.y, grid.z, block.x, block.y, block.z, smem, stream_,
                            nullptr, config),
          "cuLaunchKernel");
  }

  void gemm(const GemmArgs& g) override;

  void synchronize() override { check(a_.cuStreamSynchronize(stream_), "cuStreamSynchronize (an earlier kernel failed)"); }

  // Relaxed mode: the caching allocator may still call cuMemAlloc while a graph is captured.
  void capture_begin() override { check(a_.cuStreamBeginCapture(stream_, CU_STREAM_CAPTURE_MODE_RELAXED), "cuStreamBeginCapture"); }
  uint64_t capture_end() override {
    CUgraph graph = nullptr;
    check(a_.cuStreamEndCapture(stream_, &graph), "cuStreamEndCapture");
    CUgraphExec exec = nullptr;
    CUresult r = a_.cuGraphInstantiateWithFlags(&exec, graph, 0);
    a_.cuGraphDestroy(graph);
    check(r, "cuGraphInstantiate");
    return reinterpret_cast<uint64_t>(exec);
  }
  void graph_launch(uint64_t g) override { check(a_.cuGraphLaunch(reinterpret_cast<CUgraphExec>(g), stream_), "cuGraphLaunch"); }
  void graph_free(uint64_t g) override { check(a_.cuGraphExecDestroy(reinterpret_cast<CUgraphExec>(g)), "cuGraphExecDestroy"); }

  uint64_t event_record() override {
    CUevent e = nullptr;
    check(a_.cuEventCreate(&e, CU_EVENT_DEFAULT), "cuEventCreate");
    check(a_.cuEventRecord(e, stream_), "cuEventRecord");
    return reinterpret_cast<uint64_t>(e);
  }
  void event_free(uint64_t e) override { check(a_.cuEventDestroy(reinterpret_cast<CUevent>(e)), "cuEventDestroy"); }
  float event_elapsed_ms(uint64_t start, uint64_t end) override {
    check(a_.cuEventSynchronize(reinterpret_cast<CUevent>(end)), "cuEventSynchronize");
    float ms = 0;
    check(a_.cuEventElapsedTime(&ms, reinterpret_cast<CUevent>(start), reinterpret_cast<CUevent>(end)), "cuEventElapsedTime");
    return ms;
  }

 private:
  int attribute(int attr) {
    int v = 0;
    check(a_.cuDeviceGetAttribute(&v, attr, dev_), "cuDeviceGetAttribute");
    return v;
  }
  const GemmPlan& plan(const GemmArgs& g);

  // The two pinned buffers and the events that mark their last DMA, made at the first large copy;
  // KESTREL_CUDA_PINNED=0, or a refused cuMemHostAlloc (a locked-memory limit), leaves copies direct.
  bool staging_ready() {
    if (staging_ == 0) {
      staging_ = -1;
      const char* env = std::getenv("KESTREL_CUDA_PINNED");
      if (env && std::strcmp(env, "0") == 0) return false;
      bool ok = true;
      for (int b = 0; b < 2 && ok; b++) {
        void* p = nullptr;
        ok = a_.cuMemHostAlloc(&p, chunk_, 0) == CUDA_SUCCESS && p;
        pinned_[b] = static_cast<char*>(p);
        ok = ok && a_.cuEventCreate(&staged_[b], CU_EVENT_DISABLE_TIMING) == CUDA_SUCCESS;
      }
      if (!ok) {  // whatever was made is given back; copies stay direct
        for (int b = 0; b < 2; b++) {
          if (pinned_[b]) a_.cuMemFreeHost(pinned_[b]);
          if (staged_[b]) a_.cuEventDestroy(staged_[b]);
          pinned_[b] = nullptr, staged_[b] = nullptr;
        }
        return false;
      }
      staging_ = 1;
    }
    return staging_ == 1;
  }
  struct StagingOps {
    GpuDevice& d;
    int next = 0;
    char* buffer(int b) { return d.pinned_[b]; }
    // a never-recorded event is complete; a failed kernel's sticky error surfaces here as at synchronize()
    void wait(int b) { check(d.a_.cuEventSynchronize(d.staged_[b]), "cuEventSynchronize (a staged copy, or an earlier kernel, failed)"); }
    void to_device(uint64_t dst, int b, size_t n) {
      check(d.a_.cuMemcpyHtoDAsync(dst, d.pinned_[b], n, d.stream_), "cuMemcpyHtoDAsync (staged)");
      check(d.a_.cuEventRecord(d.staged_[b], d.stream_), "cuEventRecord (staging)");
    }
    void to_host(int b, uint64_t src, size_t n) {
      check(d.a_.cuMemcpyDtoHAsync(d.pinned_[b], src, n, d.stream_), "cuMemcpyDtoHAsync (staged)");
      check(d.a_.cuEventRecord(d.staged_[b], d.stream_), "cuEventRecord (staging)");
    }
  };

  const CudaApi& a_;
  const size_t chunk_ = staging_chunk();
  int staging_ = 0;  // 0: not tried yet, 1: ready, -1: copies stay direct
  char* pinned_[2] = {nullptr, nullptr};
  CUevent staged_[2] = {nullptr, nullptr};
  StagingOps staging_ops_{*this};
  DeviceInfo info_;
  CUdevice dev_ = 0;
  CUcontext ctx_ = nullptr;
  CUstream stream_ = nullptr;
  cublasLtHandle_t blas_ = nullptr;
  uint64_t workspace_ = 0;
  std::map<PlanKey, GemmPlan> plans_;
};

cublasLtMatrixLayout_t make_layout(const CudaApi& a, int type, int64_t rows, int64_t cols, int64_t ld, int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  check_blas(a.cublasLtMatrixLayoutCreate(&l, type, uint64_t(rows), uint64_t(cols), ld), "matrix layout");
  if (batch > 1) {
    int32_t count = int32_t(batch);
    check_blas(a.cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)), "batch count");
    check_blas(a.cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)), "batch stride");
  }
  return l;
}

// Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ: cuBLASLt's "A" is our B (N x K,
// transposed when B was stored [K, N]... see below) and its "B" is our A; m = N, n = M.
const GemmPlan& GpuDevice::plan(const GemmArgs& g) {
  uint32_t alA = alignment_of(g.A), alB = alignment_of(g.B), alC = alignment_of(g.C), alBias = g.bias ? alignment_of(g.bias) : 0;
  PlanKey key{g.dtype, g.out_dtype, g.transA, g.transB, g.tf32, g.M, g.N, g.K, g.batch, g.lda, g.ldb, g.ldc, g.strideA, g.strideB, g.strideC, alA, alB, alC, alBias};
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  const int type = cuda_dtype(g.dtype);
  GemmPlan p;
  int compute = g.dtype == 1 ? CUBLAS_COMPUTE_64F : g.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  int scale = g.dtype == 1 ? CUDA_R_64F : CUDA_R_32F;
  check_blas(a_.cublasLtMatmulDescCreate(&p.desc, compute, scale), "matmul descriptor");
  // Our B stored [K, N] (row-major, ldb) reads column-major as N x K = Bᵀ: no transpose needed.
  // Stored [N, K] (transB) it reads as K x N, and cuBLASLt transposes it.
  int32_t opA = g.transB ? CUBLAS_OP_T : CUBLAS_OP_N, opB = g.transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  check_blas(a_.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA)), "transa");
  check_blas(a_.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB)), "transb");
  p.a = g.transB ? make_layout(a_, type, g.K, g.N, g.ldb, g.batch, g.strideB) : make_layout(a_, type, g.N, g.K, g.ldb, g.batch, g.strideB);
  p.b = g.transA ? make_layout(a_, type, g.M, g.K, g.lda, g.batch, g.strideA) : make_layout(a_, type, g.K, g.M, g.lda, g.batch, g.strideA);
  p.c = make_layout(a_, cuda_dtype(g.out_dtype), g.N, g.M, g.ldc, g.batch, g.strideC);
  if (g.bias) {
    // cuBLASLt's D is our Cᵀ (N rows): its BIAS epilogue adds a vector over D's rows, our columns,
    // in the output's type (its default, set to say so)
    const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bias_type = cuda_dtype(g.out_dtype);
    check_blas(a_.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)), "bias epilogue");
    check_blas(a_.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)), "bias type");
    check_blas(a_.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)), "bias pointer");
  }
  cublasLtMatmulPreference_t pref = nullptr;
  check_blas(a_.cublasLtMatmulPreferenceCreate(&pref), "preference");
  uint64_t ws = kWorkspaceBytes;
  a_.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  // cuBLASLt's "A" is our B and its "B" our A (attributes 5..8: minimum alignment of A, B, C, D).
  uint32_t aligns[4] = {alB, alA, alC, alC};
  for (int i = 0; i < 4; i++) a_.cublasLtMatmulPreferenceSetAttribute(pref, 5 + i, &aligns[i], sizeof(uint32_t));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t s = a_.cublasLtMatmulAlgoGetHeuristic(blas_, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
  a_.cublasLtMatmulPreferenceDestroy(pref);
  if (s != 0 || found == 0)
    p.error = std::string("cuBLASLt has no algorithm for this GEMM") + (g.bias ? " with a bias epilogue" : "") + " (status " +
              std::to_string(s) + ", M=" + std::to_string(g.M) + " N=" + std::to_string(g.N) + " K=" + std::to_string(g.K) +
              ", lda=" + std::to_string(g.lda) + " ldb=" + std::to_string(g.ldb) + " ldc=" + std::to_string(g.ldc) + ")";
  p.algo = result.algo;
  p.workspace = result.workspaceSize;
  return plans_.emplace(key, p).first->second;
}

void GpuDevice::gemm(const GemmArgs& g) {
  if (!a_.cublasLtMatmul) throw CudaError("matmul on the GPU needs cuBLASLt: " + load_report().cublaslt.error);
  const GemmPlan& p = plan(g);
  if (!p.error.empty()) throw CudaError(p.error);
  // a plan serves every bias of its alignment: this call's goes into the descriptor
  if (g.bias) check_blas(a_.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)), "bias pointer");
  double alpha64 = g.alpha, beta64 = g.beta;
  const void* alpha = g.dtype == 1 ? static_cast<const void*>(&alpha64) : static_cast<const void*>(&g.alpha);
  const void* beta = g.dtype == 1 ? static_cast<const void*>(&beta64) : static_cast<const void*>(&g.beta);
  check_blas(a_.cublasLtMatmul(blas_, p.desc, alpha, reinterpret_cast<const void*>(g.B), p.a, reinterpret_cast<const void*>(g.A), p.b,
                               beta, reinterpret_cast<const void*>(g.C), p.c, reinterpret_cast<void*>(g.C), p.c, &p.algo,
                               reinterpret_cast<void*>(workspace_), kWorkspaceBytes, stream_),
             "matmul");
}

}  // namespace

std::unique_ptr<Device> make_gpu_device(int ordinal) { return std::make_unique<GpuDevice>(ordinal); }

}  // namespace kestrel::cuda

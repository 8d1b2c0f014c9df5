// The only file that sees N-API. JS packs each kernel's arguments into one shared
// Float64Array (no per-call allocation or array unwrapping) and calls call(id, count).
#include <napi.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "alloc.h"
#include "cuda/runtime.h"
#include "cuda/staging.h"
#include "dist_mpi.h"
#include "dist_shm.h"
#include "exit_watch.h"
#include "file_read.h"
#include "gemm_half.h"
#include "kernel_api.h"
#include "quant_weight.h"

using namespace kestrel;

namespace {

constexpr size_t kArgSlots = 4096;
constexpr size_t kCudaArgBytes = 4096;  // CUDA's limit on a kernel's parameters (before Volta's 32 KB)

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) {
    auto buffer = Napi::ArrayBuffer::New(env, kArgSlots * sizeof(double));
    args_ = static_cast<double*>(buffer.Data());
    args_ref_ = Napi::Persistent(buffer);
    size_t count = 0;
    const KernelEntry* table = kernel_table(&count);
    kernels_.assign(table, table + count);
    Napi::Array names = Napi::Array::New(env, count);
    for (size_t i = 0; i < count; i++) names.Set(uint32_t(i), Napi::String::New(env, table[i].name));

    DefineAddon(exports, {
        InstanceMethod("alloc", &Addon::Alloc),
        InstanceMethod("free", &Addon::Free),
        InstanceMethod("write", &Addon::Write),
        InstanceMethod("read", &Addon::Read),
        InstanceMethod("readFile", &Addon::ReadFile),
        InstanceMethod("call", &Addon::Call),
        InstanceMethod("runProgram", &Addon::RunProgram),
        InstanceMethod("info", &Addon::Info),
        InstanceMethod("setThreads", &Addon::SetThreads),
        InstanceMethod("liveBytes", &Addon::LiveBytes),
        InstanceMethod("allocStats", &Addon::AllocStatsJs),
        InstanceMethod("allocEmptyCache", &Addon::AllocEmptyCache),
        InstanceMethod("allocConfigure", &Addon::AllocConfigure),
        InstanceMethod("warmup", &Addon::Warmup),
        InstanceMethod("cudaLoad", &Addon::CudaLoad),
        InstanceMethod("cudaInit", &Addon::CudaInit),
        InstanceMethod("cudaAlloc", &Addon::CudaAlloc),
        InstanceMethod("cudaFree", &Addon::CudaFree),
        InstanceMethod("cudaWrite", &Addon::CudaWrite),
        InstanceMethod("cudaRead", &Addon::CudaRead),
        InstanceMethod("cudaCopy", &Addon::CudaCopy),
        InstanceMethod("cudaCompile", &Addon::CudaCompile),
        InstanceMethod("cudaModule", &Addon::CudaModule),
        InstanceMethod("cudaFunction", &Addon::CudaFunction),
        InstanceMethod("cudaSetSmem", &Addon::CudaSetSmem),
        InstanceMethod("cudaLaunch", &Addon::CudaLaunch),
        InstanceMethod("cudaGemm", &Addon::CudaGemm),
        InstanceMethod("cudaSync", &Addon::CudaSync),
        InstanceMethod("cudaMemStats", &Addon::CudaMemStats),
        InstanceMethod("cudaResetPeak", &Addon::CudaResetPeak),
        InstanceMethod("cudaEmptyCache", &Addon::CudaEmptyCache),
        InstanceMethod("cudaCapture", &Addon::CudaCapture),
        InstanceMethod("cudaGraph", &Addon::CudaGraph),
        InstanceMethod("cudaEvent", &Addon::CudaEvent),
        InstanceMethod("distOpen", &Addon::DistOpen),
        InstanceMethod("distRun", &Addon::DistRun),
        InstanceMethod("distRunSync", &Addon::DistRunSync),
        InstanceMethod("distShare", &Addon::DistShare),
        InstanceMethod("distSharedCalls", &Addon::DistSharedCalls),
        InstanceMethod("distCmaCalls", &Addon::DistCmaCalls),
        InstanceMethod("distCmaState", &Addon::DistCmaState),
        InstanceMethod("distWaiting", &Addon::DistWaiting),
        InstanceMethod("distPeer", &Addon::DistPeer),
        InstanceMethod("distWhole", &Addon::DistWhole),
        InstanceMethod("distClose", &Addon::DistClose),
        InstanceMethod("distWaitIdle", &Addon::DistWaitIdle),
        InstanceMethod("distUnlink", &Addon::DistUnlink),
        InstanceMethod("distPieceElements", &Addon::DistPieceElements),
        InstanceMethod("exitWatchStart", &Addon::ExitWatchStart),
        InstanceMethod("exitWatchAdd", &Addon::ExitWatchAdd),
        InstanceMethod("exitWatchExits", &Addon::ExitWatchExits),
        InstanceMethod("exitWatchStop", &Addon::ExitWatchStop),
        InstanceMethod("mpiLoad", &Addon::MpiLoad),
        InstanceMethod("mpiInit", &Addon::MpiInit),
        InstanceMethod("mpiGroupInfo", &Addon::MpiGroupInfo),
        InstanceMethod("mpiGroup", &Addon::MpiGroup),
        InstanceMethod("mpiRun", &Addon::MpiRun),
        InstanceMethod("mpiRunSync", &Addon::MpiRunSync),
        InstanceMethod("mpiWaitIdle", &Addon::MpiWaitIdle),
        InstanceMethod("mpiPieceElements", &Addon::MpiPieceElements),
        InstanceMethod("mpiFree", &Addon::MpiFree),
        InstanceMethod("mpiFinish", &Addon::MpiFinish),
    });
    auto cuda_args = Napi::ArrayBuffer::New(env, kCudaArgBytes);
    cuda_args_ = static_cast<char*>(cuda_args.Data());
    cuda_args_ref_ = Napi::Persistent(cuda_args);
    exports.Set("cudaArgs", Napi::Uint8Array::New(env, kCudaArgBytes, cuda_args, 0));
    exports.Set("args", Napi::Float64Array::New(env, kArgSlots, buffer, 0));
    exports.Set("kernels", names);
  }

 private:
  template <class F>
  static auto guard(Napi::Env env, const char* what, F f) -> decltype(f()) {
    try {
      return f();
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("kestrel native ") + what + ": " + e.what());
    }
  }

  static double number(const Napi::CallbackInfo& info, size_t i, const char* fn) {
    if (i >= info.Length() || !info[i].IsNumber())
      throw Napi::TypeError::New(info.Env(), std::string("kestrel native ") + fn + ": argument " + std::to_string(i) + " must be a number");
    return info[i].As<Napi::Number>().DoubleValue();
  }

  // alloc(bytes, zero) -> handle
  Napi::Value Alloc(const Napi::CallbackInfo& info) {
    double bytes = number(info, 0, "alloc");
    bool zero = info.Length() > 1 && info[1].ToBoolean();
    if (!(bytes >= 0) || bytes > 1e15) throw Napi::RangeError::New(info.Env(), "kestrel native alloc: bad byte count");
    return Napi::Number::New(info.Env(), guard(info.Env(), "alloc", [&] { return storage_alloc(size_t(bytes), zero); }));
  }

  Napi::Value Free(const Napi::CallbackInfo& info) {
    double h = number(info, 0, "free");
    guard(info.Env(), "free", [&] { storage_free(h); return 0; });
    return info.Env().Undefined();
  }

  // write(handle, byteOffset, typedArray) / read(handle, byteOffset, typedArray): copy bytes
  // between a storage block and a JS typed array, bounds-checked on both sides.
  Napi::Value Write(const Napi::CallbackInfo& info) { return transfer(info, true); }
  Napi::Value Read(const Napi::CallbackInfo& info) { return transfer(info, false); }

  Napi::Value transfer(const Napi::CallbackInfo& info, bool to_native) {
    const char* fn = to_native ? "write" : "read";
    double h = number(info, 0, fn), off = number(info, 1, fn);
    if (info.Length() < 3 || !info[2].IsTypedArray())
      throw Napi::TypeError::New(info.Env(), std::string("kestrel native ") + fn + ": argument 2 must be a typed array");
    auto ta = info[2].As<Napi::TypedArray>();
    char* js = static_cast<char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    size_t n = ta.ByteLength();
    guard(info.Env(), fn, [&] {
      size_t bytes = 0;
      char* base = storage_lookup(h, &bytes);
      if (!(off >= 0) || size_t(off) + n > bytes)
        throw KernelError("range [" + std::to_string(size_t(off)) + ", +" + std::to_string(n) + ") outside storage of " + std::to_string(bytes) + " bytes");
      if (n) {
        if (to_native) std::memcpy(base + size_t(off), js, n);
        else std::memcpy(js, base + size_t(off), n);
      }
      return 0;
    });
    return info.Env().Undefined();
  }

  // readFile(handle, byteOffset, fd, position, bytes): pread(2) straight into a storage block
  // (file_read.h), so loading a checkpoint copies each byte once, with no JS buffer in between.
  Napi::Value ReadFile(const Napi::CallbackInfo& info) {
    double h = number(info, 0, "readFile"), off = number(info, 1, "readFile"), fd = number(info, 2, "readFile");
    double pos = number(info, 3, "readFile"), n = number(info, 4, "readFile");
    auto whole = [](double v) { return v >= 0 && v <= 9007199254740991.0 && v == double(int64_t(v)); };
    if (!whole(off) || !whole(pos) || !whole(n) || !whole(fd) || fd > 2147483647.0)
      throw Napi::RangeError::New(info.Env(), "kestrel native readFile: offsets, descriptor and length must be non-negative integers");
    guard(info.Env(), "readFile", [&] { storage_read_file(h, size_t(off), int(fd), int64_t(pos), size_t(n)); return 0; });
    return info.Env().Undefined();
  }

  // call(kernelId, argCount): runs a registered kernel over the packed arguments.
  Napi::Value Call(const Napi::CallbackInfo& info) {
    double id = number(info, 0, "call"), count = number(info, 1, "call");
    if (!(id >= 0) || size_t(id) >= kernels_.size())
      throw Napi::RangeError::New(info.Env(), "kestrel native call: unknown kernel id");
    if (!(count >= 0) || size_t(count) > kArgSlots)
      throw Napi::RangeError::New(info.Env(), "kestrel native call: bad argument count");
    run_kernel(info.Env(), size_t(id), size_t(count));
    return info.Env().Undefined();
  }

  // Runs kernel `id` over the first n packed arguments, its errors as JS errors naming it.
  void run_kernel(Napi::Env env, size_t id, size_t n) {
    const KernelEntry& k = kernels_[id];
    guard(env, k.name, [&] {
      Args a(args_, n);
      k.fn(a);
      return 0;
    });
  }

  // runProgram(calls, patchAt, patchDelta, steps[, times]): replays recorded kernel calls (src/backend/cpu/graph.ts).
  // calls is [kernel id, n, n arguments]...; argument patchAt[i] (an index into calls, ascending) is
  // increased by patchDelta[i] * steps before its call: the view offsets and lengths that move with
  // the decode position. Each call is checked as a single call is, its views against their storages.
  // times (a Float64Array, one per call; k.profile): call j's wall time in ms is added to times[j].
  Napi::Value RunProgram(const Napi::CallbackInfo& info) {
    if (info.Length() < 4 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray())
      throw Napi::TypeError::New(info.Env(), "kestrel native runProgram: expected (Float64Array, Int32Array, Float64Array, steps[, Float64Array])");
    double* times = nullptr;
    size_t ntimes = 0;
    if (info.Length() > 4 && !info[4].IsUndefined()) {
      if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
        throw Napi::TypeError::New(info.Env(), "kestrel native runProgram: times must be a Float64Array");
      auto t = info[4].As<Napi::Float64Array>();
      times = t.Data(), ntimes = t.ElementLength();
    }
    auto calls = info[0].As<Napi::Float64Array>();
    auto at = info[1].As<Napi::Int32Array>();
    auto delta = info[2].As<Napi::Float64Array>();
    double steps = number(info, 3, "runProgram");
    if (at.ElementLength() != delta.ElementLength())
      throw Napi::RangeError::New(info.Env(), "kestrel native runProgram: patchAt and patchDelta differ in length");
    const double* c = calls.Data();
    const size_t len = calls.ElementLength(), np = at.ElementLength();
    if (times) {  // counted before any call runs, so a short array never leaves a step half done
      size_t count = 0;
      for (size_t j = 0; j + 1 < len && c[j + 1] >= 0 && c[j + 1] <= double(len); j += 2 + size_t(c[j + 1])) count++;  // bad headers: the loop below throws
      if (count > ntimes) throw Napi::RangeError::New(info.Env(), "kestrel native runProgram: times holds " + std::to_string(ntimes) + " calls, the program " + std::to_string(count));
    }
    size_t i = 0, p = 0, call = 0;
    while (i < len) {
      if (i + 2 > len) throw Napi::RangeError::New(info.Env(), "kestrel native runProgram: a call's header runs past the program");
      const double id = c[i], n = c[i + 1];
      if (!(id >= 0) || size_t(id) >= kernels_.size() || !(n >= 0) || size_t(n) > kArgSlots || i + 2 + size_t(n) > len)
        throw Napi::RangeError::New(info.Env(), "kestrel native runProgram: bad kernel id or argument count at " + std::to_string(i));
      const size_t base = i + 2, end = base + size_t(n);
      std::memcpy(args_, c + base, size_t(n) * sizeof(double));
      for (; p < np && size_t(at[p]) < end; p++) {
        if (at[p] < int32_t(base)) throw Napi::RangeError::New(info.Env(), "kestrel native runProgram: patches must ascend and point at arguments");
        args_[size_t(at[p]) - base] += delta[p] * steps;
      }
      if (times) {
        const auto t0 = std::chrono::steady_clock::now();
        run_kernel(info.Env(), size_t(id), size_t(n));
        times[call] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      } else {
        run_kernel(info.Env(), size_t(id), size_t(n));
      }
      call++;
      i = end;
    }
    if (p != np) throw Napi::RangeError::New(info.Env(), "kestrel native runProgram: a patch points past the program");
    return info.Env().Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    const CpuFeatures& f = cpu_features();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("avx2", f.avx2);
    o.Set("fma", f.fma);
    o.Set("avx512f", f.avx512f);
    o.Set("f16c", f.f16c);
    o.Set("avx512bf16", f.avx512bf16);
    o.Set("amxBf16", f.amx_bf16);
    o.Set("avx512vnni", f.avx512vnni);
    o.Set("avxVnni", f.avxvnni);
    // the decode GEMV's activation path (quant_gemv_int8.cc; KESTREL_QUANT_GEMV forces one)
    o.Set("quantGemv", quant_gemv_path_name());
    // the path a large half-precision matmul takes now (gemm_half.h; KESTREL_BF16_GEMM forces one)
    o.Set("bf16Gemm", hgemm_path_name(BF16));
    o.Set("fp16Gemm", hgemm_path_name(F16));
    o.Set("threads", num_threads());
    return o;
  }

  Napi::Value SetThreads(const Napi::CallbackInfo& info) {
    set_num_threads(int(number(info, 0, "setThreads")));
    return info.Env().Undefined();
  }

  Napi::Value LiveBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(storage_live_bytes()));
  }

  // The caching allocator's counters (native/alloc.h AllocStats), in bytes and blocks.
  Napi::Value AllocStatsJs(const Napi::CallbackInfo& info) {
    AllocStats a = alloc_stats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("inUse", double(a.in_use_bytes));
    o.Set("cached", double(a.cached_bytes));
    o.Set("cachedBlocks", double(a.cached_blocks));
    o.Set("limit", double(a.limit_bytes));
    o.Set("osAllocs", double(a.os_allocs));
    o.Set("osFrees", double(a.os_frees));
    o.Set("cacheHits", double(a.cache_hits));
    o.Set("enabled", a.enabled);
    o.Set("poison", a.poison);
    return o;
  }

  Napi::Value AllocEmptyCache(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(alloc_empty_cache()));
  }

  // allocConfigure(limitBytes, enabled, poison)
  Napi::Value AllocConfigure(const Napi::CallbackInfo& info) {
    double limit = number(info, 0, "allocConfigure");
    if (!(limit >= 0) || limit > 1e18) throw Napi::RangeError::New(info.Env(), "kestrel native allocConfigure: bad limit " + std::to_string(limit));
    alloc_configure(size_t(limit), info.Length() > 1 && info[1].ToBoolean(), info.Length() > 2 && info[2].ToBoolean());
    return info.Env().Undefined();
  }

  // Starts the thread pool and runs the per-thread warm-up (kernel_api.h ThreadWarmup).
  Napi::Value Warmup(const Napi::CallbackInfo& info) {
    guard(info.Env(), "warmup", [&] { warm_pool(); return 0; });
    return info.Env().Undefined();
  }

#include "binding_cuda.inc"
#include "binding_dist.inc"
#include "binding_mpi.inc"

  double* args_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> args_ref_;
  char* cuda_args_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> cuda_args_ref_;
  std::vector<KernelEntry> kernels_;
};

}  // namespace

NODE_API_ADDON(Addon)

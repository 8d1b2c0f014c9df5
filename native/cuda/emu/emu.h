// The CUDA emulator: runs the kernels of native/cuda/kernels/*.cu on the host, compiled as C++
// (prelude.h), one block at a time with every thread a fiber, so __syncthreads and warp
// shuffles behave as on a GPU. It lets CI (no GPU) run the CUDA backend's kernels against the
// reference backend; a GPU run (bench/gpu/run.sh) then checks the same kernels on hardware.
// A kernel whose threads disagree at a barrier is reported as a deadlock, never a hang.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

namespace kestrel::cuda::emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Calls a kernel with arguments unpacked from a CUDA parameter buffer (each parameter at its own
// alignment, in order, as CU_LAUNCH_PARAM_BUFFER_POINTER lays them out).
using Thunk = void (*)(void* fn, const char* args);

struct KernelEntry {
  std::string name;
  void* fn;
  Thunk thunk;
  std::vector<size_t> param_offsets, param_sizes;
  size_t arg_bytes;  // the packed size the kernel expects
};

void register_kernel(KernelEntry e);
const KernelEntry* find_kernel(const std::string& name);

// Runs grid x block threads of `k` to completion; throws std::runtime_error on a deadlock.
void launch(const KernelEntry& k, Dim3 grid, Dim3 block, unsigned smem_bytes, const void* args, size_t bytes);

// ---------------------------------------------------------------- called from prelude.h

struct Uint3 {
  unsigned x, y, z;
};
extern Uint3 g_thread_idx, g_block_idx;
extern Dim3 g_block_dim, g_grid_dim;
extern char* g_dynamic_smem;

void sync_block();  // __syncthreads
void sync_warp();   // __syncwarp and the halves of a shuffle
// The exchange slot of the current thread and of lane `lane` of its warp (8 bytes each).
uint64_t* shuffle_slot(int lane);
int lane_id();
// Warp-collective: every lane's `bytes` (at most 64) from `mine`, lane by lane, into `all`
// (the emulated tensor-core instructions of common.cuh gather their fragments with it).
void warp_exchange(const void* mine, void* all, unsigned bytes);
[[noreturn]] void trap(const char* why);
// cp.async: `bytes` from src to dst when the issuing thread next calls async_wait_all (a thread
// that ends with copies in flight is reported as an error, as the GPU leaves them undefined).
void async_copy(void* dst, const void* src, unsigned bytes);
void async_wait_all();

template <class T>
T shuffle(T v, int src_lane) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  *shuffle_slot(lane_id()) = bits;
  sync_warp();
  uint64_t got = *shuffle_slot(src_lane);
  sync_warp();
  T out;
  std::memcpy(&out, &got, sizeof(T));
  return out;
}

// ---------------------------------------------------------------- registration

template <class T>
struct TypeTag {
  using type = T;
};

template <class... A>
void call_unpacked(void* fn, const char* buf) {
  size_t off = 0;
  auto take = [&](auto tag) {
    using T = typename decltype(tag)::type;
    off = (off + alignof(T) - 1) / alignof(T) * alignof(T);
    T v;
    std::memcpy(static_cast<void*>(&v), buf + off, sizeof(T));
    off += sizeof(T);
    return v;
  };
  std::tuple<A...> args{take(TypeTag<A>{})...};  // braced lists evaluate left to right
  std::apply(reinterpret_cast<void (*)(A...)>(fn), args);
}

template <class... A>
KernelEntry make_entry(const char* name, void (*fn)(A...)) {
  KernelEntry e{name, reinterpret_cast<void*>(fn), &call_unpacked<A...>, {}, {}, 0};
  size_t off = 0;
  auto add = [&](size_t size, size_t align) {
    off = (off + align - 1) / align * align;
    e.param_offsets.push_back(off);
    e.param_sizes.push_back(size);
    off += size;
  };
  (add(sizeof(A), alignof(A)), ...);
  e.arg_bytes = off;
  return e;
}

struct Registrar {
  template <class... A>
  Registrar(const char* name, void (*fn)(A...)) {
    register_kernel(make_entry(name, fn));
  }
};

}  // namespace kestrel::cuda::emu

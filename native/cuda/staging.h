// Large host<->device copies in chunks through two page-locked (pinned) staging buffers: the CPU's
// copy of one chunk overlaps the DMA of the other, and the DMA runs at the bus's pinned rate (from
// pageable memory the driver stages every byte itself, at a fraction of it). The pipeline is
// written over a few primitives so that the GPU (driver API, device_gpu.cc) and the emulator
// (plain copies, device_emu.cc) run the same chunking, and CI's emulated tests cover its offsets
// and tails (KESTREL_CUDA_STAGING_BYTES sets the chunk).
//
// Ops: char* buffer(int b); void wait(int b): the DMA last queued on buffer b is done;
// void to_device(uint64_t dst, int b, size_t n) / void to_host(int b, uint64_t src, size_t n):
// queue a DMA out of / into buffer b (in order with the device's other work) and mark b;
// int next: the buffer the next copy starts on (copies alternate, so that of two one-chunk uploads
// in a row the second fills the other buffer while the first one's DMA runs).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace kestrel::cuda {

constexpr size_t kStagingChunk = 4u << 20;   // each of the two pinned buffers
constexpr size_t kStagingMinimum = 256u << 10;  // smaller copies go straight from pageable memory

// The chunk size: KESTREL_CUDA_STAGING_BYTES (tests: small chunks cross many boundaries) or the default.
inline size_t staging_chunk() {
  const char* env = std::getenv("KESTREL_CUDA_STAGING_BYTES");
  const long long n = env ? std::atoll(env) : 0;
  return n > 0 ? size_t(n) : kStagingChunk;
}

// Copies that went through the staging buffers (cudaMemStats' stagedCopies: tests see the path taken).
inline std::atomic<uint64_t> staged_copies{0};

// Whether a copy of n bytes goes through the staging buffers of `chunk` bytes.
inline bool staged(size_t n, size_t chunk) { return n >= std::min(chunk, kStagingMinimum); }

// src[0, n) to device dst: each chunk waits until its buffer's previous DMA (the chunk before last,
// or an earlier copy's) has read it, is copied in, and its DMA is queued. Returns once src is consumed.
template <class Ops>
void staged_upload(Ops& ops, size_t chunk, uint64_t dst, const char* src, size_t n) {
  staged_copies++;
  for (size_t off = 0; off < n; off += chunk) {
    const int b = ops.next;
    const size_t len = std::min(chunk, n - off);
    ops.wait(b);
    std::memcpy(ops.buffer(b), src + off, len);
    ops.to_device(dst + off, b, len);
    ops.next = 1 - b;
  }
}

// Device src[0, n) to dst: chunk i's DMA is queued before chunk i-1 is copied out of its buffer,
// so the two overlap; a buffer's previous chunk was copied out before its next DMA is queued.
template <class Ops>
void staged_download(Ops& ops, size_t chunk, char* dst, uint64_t src, size_t n) {
  staged_copies++;
  int prev = -1;  // the buffer of the chunk not yet copied out, at prev_off
  size_t prev_off = 0, prev_len = 0;
  auto copy_out = [&] {
    ops.wait(prev);
    std::memcpy(dst + prev_off, ops.buffer(prev), prev_len);
  };
  for (size_t off = 0; off < n; off += chunk) {
    const int b = ops.next;
    const size_t len = std::min(chunk, n - off);
    ops.to_host(b, src + off, len);
    if (prev >= 0) copy_out();
    prev = b, prev_off = off, prev_len = len;
    ops.next = 1 - b;
  }
  if (prev >= 0) copy_out();
}

}  // namespace kestrel::cuda

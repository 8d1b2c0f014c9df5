// Reading a byte range of an open file straight into a storage block (safetensors loading): one
// copy, from the page cache into the block, with no JavaScript buffer in between.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kestrel {

// Reads `bytes` bytes at file offset `position` of the open descriptor `fd` into the storage block
// `handle` at `byte_offset`. Throws KernelError, never touching memory, when the range falls outside
// the block; throws when the file ends early or read fails (the message says which).
void storage_read_file(double handle, size_t byte_offset, int fd, int64_t position, size_t bytes);

}  // namespace kestrel

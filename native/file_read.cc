// pread(2) into a storage block. A loop, because one pread returns at most ~2 GiB on Linux and may
// return less than asked (a signal, a network file system); EINTR is retried.
#include "file_read.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "kernel_api.h"

namespace kestrel {

void storage_read_file(double handle, size_t byte_offset, int fd, int64_t position, size_t bytes) {
  size_t size = 0;
  char* base = storage_lookup(handle, &size);
  // byte_offset + bytes written so that neither addition can wrap
  if (byte_offset > size || bytes > size - byte_offset)
    throw KernelError("range [" + std::to_string(byte_offset) + ", +" + std::to_string(bytes) + ") outside storage of " +
                      std::to_string(size) + " bytes");
  if (fd < 0) throw KernelError("invalid file descriptor " + std::to_string(fd));
  if (position < 0) throw KernelError("negative file position " + std::to_string(position));
  char* dst = base + byte_offset;
  size_t done = 0;
  while (done < bytes) {
    size_t want = bytes - done;
    if (want > (size_t(1) << 30)) want = size_t(1) << 30;
    ssize_t n = ::pread(fd, dst + done, want, off_t(position + int64_t(done)));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw KernelError(std::string("read failed at file offset ") + std::to_string(position + int64_t(done)) + ": " + std::strerror(errno));
    }
    if (n == 0)
      throw KernelError("unexpected end of file at offset " + std::to_string(position + int64_t(done)) + " (" +
                        std::to_string(bytes - done) + " of " + std::to_string(bytes) + " bytes missing)");
    done += size_t(n);
  }
}

}  // namespace kestrel

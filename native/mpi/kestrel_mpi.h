// The C ABI between the addon (native/dist_mpi.cc, built without MPI headers) and
// kestrel_mpi.cc (built with mpicxx at first use, one library per MPI implementation, because
// Open MPI and MPICH differ in ABI). Communicators and requests are opaque on this side: a
// communicator is a small integer, a request an aligned 16-byte cell that holds an MPI_Request.
// Every function returns an MPI error code (0 = MPI_SUCCESS); kmpi_error_string explains one.
#pragma once
#include <cstddef>

extern "C" {

#define KMPI_ABI_VERSION 1

struct kmpi_request {
  alignas(8) unsigned char cell[16];
};

// element types MPI reduces itself (half types are widened to KMPI_F32 by the caller)
enum { KMPI_F32 = 0, KMPI_F64 = 1, KMPI_I32 = 2, KMPI_I64 = 3, KMPI_U8 = 4 };
enum { KMPI_SUM = 0, KMPI_MAX = 1, KMPI_MIN = 2 };

typedef int (*kmpi_abi_version_fn)(void);
typedef int (*kmpi_init_fn)(int* rank, int* size, int* thread_level_ok);
typedef int (*kmpi_library_version_fn)(char* out, int len);
typedef int (*kmpi_error_string_fn)(int code, char* out, int len);
// a communicator of `n` members of `parent` (their ranks in parent), called by those members only
typedef int (*kmpi_comm_create_group_fn)(int parent, const int* ranks, int n, int* out);
typedef int (*kmpi_comm_dup_fn)(int comm, int* out);
typedef int (*kmpi_comm_free_fn)(int comm);
typedef int (*kmpi_iallreduce_fn)(int comm, void* buf, int count, int dtype, int op, kmpi_request* req);
typedef int (*kmpi_ireduce_scatter_block_fn)(int comm, const void* send, void* recv, int count, int dtype, int op, kmpi_request* req);
typedef int (*kmpi_iallgather_fn)(int comm, const void* send, void* recv, int bytes, kmpi_request* req);
typedef int (*kmpi_ialltoall_fn)(int comm, const void* send, void* recv, int bytes, kmpi_request* req);
typedef int (*kmpi_ibcast_fn)(int comm, void* buf, int bytes, int root, kmpi_request* req);
typedef int (*kmpi_isend_fn)(int comm, const void* buf, int bytes, int peer, int tag, kmpi_request* req);
typedef int (*kmpi_irecv_fn)(int comm, void* buf, int bytes, int peer, int tag, kmpi_request* req);
typedef int (*kmpi_ibarrier_fn)(int comm, kmpi_request* req);
typedef int (*kmpi_test_fn)(kmpi_request* req, int* done);
// a message with this tag waiting from anyone: *source is its sender, or -1 when none
typedef int (*kmpi_iprobe_fn)(int comm, int tag, int* source);
typedef int (*kmpi_finalize_fn)(void);
typedef void (*kmpi_abort_fn)(int code);

}  // extern "C"

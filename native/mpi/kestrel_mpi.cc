// The only Kestrel source that sees MPI's headers: a thin C ABI (kestrel_mpi.h) over MPI's
// non-blocking collectives and point-to-point calls, compiled at first use with
// `mpicxx -shared -fPIC` (src/dist/mpi_library.ts) and dlopen'ed by the addon
// (native/dist_mpi.cc), so that the addon builds, and Kestrel runs, where no MPI is installed.
// Pieces, staging buffers, half-precision widening, timeouts and messages live in the addon.
#include "kestrel_mpi.h"

#include <mpi.h>

#include <cstring>
#include <new>
#include <vector>

static_assert(sizeof(MPI_Request) <= sizeof(kmpi_request), "an MPI_Request must fit a kmpi_request cell");

namespace {

std::vector<MPI_Comm>& comms() {
  static std::vector<MPI_Comm> c;
  return c;
}

// the communicator of an id, or MPI_COMM_NULL for one that is unknown or freed
MPI_Comm comm(int id) { return id >= 0 && size_t(id) < comms().size() ? comms()[size_t(id)] : MPI_COMM_NULL; }

int add(MPI_Comm c, int* out) {
  MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
  comms().push_back(c);
  *out = int(comms().size() - 1);
  return MPI_SUCCESS;
}

MPI_Datatype dtype(int code) {
  switch (code) {
    case KMPI_F32: return MPI_FLOAT;
    case KMPI_F64: return MPI_DOUBLE;
    case KMPI_I32: return MPI_INT32_T;
    case KMPI_I64: return MPI_INT64_T;
    default: return MPI_UINT8_T;
  }
}

MPI_Op op(int code) { return code == KMPI_MAX ? MPI_MAX : code == KMPI_MIN ? MPI_MIN : MPI_SUM; }

MPI_Request* request(kmpi_request* r) { return reinterpret_cast<MPI_Request*>(r->cell); }

}  // namespace

extern "C" {

int kmpi_abi_version(void) { return KMPI_ABI_VERSION; }

// MPI_THREAD_SERIALIZED: the addon runs one call at a time, but on whichever libuv worker thread is free
int kmpi_init(int* rank, int* size, int* thread_level_ok) {
  int inited = 0, provided = MPI_THREAD_SINGLE;
  MPI_Initialized(&inited);
  int rc = inited ? MPI_Query_thread(&provided) : MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
  if (rc != MPI_SUCCESS) return rc;
  *thread_level_ok = provided >= MPI_THREAD_SERIALIZED;
  if (comms().empty()) {
    int id = 0;
    add(MPI_COMM_WORLD, &id);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  return MPI_Comm_size(MPI_COMM_WORLD, size);
}

int kmpi_library_version(char* out, int len) {
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int n = 0;
  int rc = MPI_Get_library_version(v, &n);
  std::strncpy(out, v, size_t(len - 1));
  out[len - 1] = 0;
  return rc;
}

int kmpi_error_string(int code, char* out, int len) {
  char s[MPI_MAX_ERROR_STRING];
  int n = 0;
  int rc = MPI_Error_string(code, s, &n);
  std::strncpy(out, rc == MPI_SUCCESS ? s : "unknown MPI error", size_t(len - 1));
  out[len - 1] = 0;
  return rc;
}

int kmpi_comm_create_group(int parent, const int* ranks, int n, int* out) {
  MPI_Group all, some;
  int rc = MPI_Comm_group(comm(parent), &all);
  if (rc != MPI_SUCCESS) return rc;
  rc = MPI_Group_incl(all, n, ranks, &some);
  MPI_Group_free(&all);
  if (rc != MPI_SUCCESS) return rc;
  MPI_Comm c = MPI_COMM_NULL;
  rc = MPI_Comm_create_group(comm(parent), some, 0, &c);
  MPI_Group_free(&some);
  return rc == MPI_SUCCESS ? add(c, out) : rc;
}

int kmpi_comm_dup(int id, int* out) {
  MPI_Comm c = MPI_COMM_NULL;
  int rc = MPI_Comm_dup(comm(id), &c);
  return rc == MPI_SUCCESS ? add(c, out) : rc;
}

int kmpi_comm_free(int id) {
  MPI_Comm c = comm(id);
  if (c == MPI_COMM_NULL || c == MPI_COMM_WORLD) return MPI_SUCCESS;
  comms()[size_t(id)] = MPI_COMM_NULL;
  return MPI_Comm_free(&c);
}

int kmpi_iallreduce(int id, void* buf, int count, int dt, int o, kmpi_request* r) {
  return MPI_Iallreduce(MPI_IN_PLACE, buf, count, dtype(dt), op(o), comm(id), request(r));
}

int kmpi_ireduce_scatter_block(int id, const void* send, void* recv, int count, int dt, int o, kmpi_request* r) {
  return MPI_Ireduce_scatter_block(send, recv, count, dtype(dt), op(o), comm(id), request(r));
}

int kmpi_iallgather(int id, const void* send, void* recv, int bytes, kmpi_request* r) {
  return MPI_Iallgather(send, bytes, MPI_BYTE, recv, bytes, MPI_BYTE, comm(id), request(r));
}

int kmpi_ialltoall(int id, const void* send, void* recv, int bytes, kmpi_request* r) {
  return MPI_Ialltoall(send, bytes, MPI_BYTE, recv, bytes, MPI_BYTE, comm(id), request(r));
}

int kmpi_ibcast(int id, void* buf, int bytes, int root, kmpi_request* r) {
  return MPI_Ibcast(buf, bytes, MPI_BYTE, root, comm(id), request(r));
}

int kmpi_isend(int id, const void* buf, int bytes, int peer, int tag, kmpi_request* r) {
  return MPI_Isend(buf, bytes, MPI_BYTE, peer, tag, comm(id), request(r));
}

int kmpi_irecv(int id, void* buf, int bytes, int peer, int tag, kmpi_request* r) {
  return MPI_Irecv(buf, bytes, MPI_BYTE, peer, tag, comm(id), request(r));
}

int kmpi_ibarrier(int id, kmpi_request* r) { return MPI_Ibarrier(comm(id), request(r)); }

int kmpi_test(kmpi_request* r, int* done) { return MPI_Test(request(r), done, MPI_STATUS_IGNORE); }

int kmpi_iprobe(int id, int tag, int* source) {
  int flag = 0;
  MPI_Status st;
  int rc = MPI_Iprobe(MPI_ANY_SOURCE, tag, comm(id), &flag, &st);
  *source = flag ? st.MPI_SOURCE : -1;
  return rc;
}

int kmpi_finalize(void) {
  int done = 0;
  MPI_Finalized(&done);
  return done ? MPI_SUCCESS : MPI_Finalize();
}

void kmpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

}  // extern "C"

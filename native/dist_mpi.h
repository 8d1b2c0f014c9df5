// The MPI transport of src/dist (dist_mpi.cc): the same calls as the shared-memory transport
// (DistCall, dist_shm.h) run through MPI's non-blocking collectives, for jobs started by mpirun
// or srun, across machines. MPI itself is reached through kestrel_mpi.so (native/mpi/), built
// with mpicxx at first use and opened here with dlopen: the addon needs no MPI to build or load.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "dist_shm.h"

namespace kestrel {

// dlopen's the library (RTLD_GLOBAL: Open MPI's plugins resolve libmpi's symbols through it);
// returns MPI_Get_library_version's text. Throws naming the path and dlerror.
std::string mpi_load(const std::string& path);

struct MpiWorld {
  int id;  // the world group's id for the calls below
  int rank, size;
};
// MPI_Init_thread (SERIALIZED), then exchanges pids and host names (to tell a dead local peer).
MpiWorld mpi_init(size_t slot_bytes, double timeout_ms);
// The group of these members of `parent` (their ranks in parent, ascending); called by them only.
int mpi_group(int parent, const std::vector<int>& parent_ranks);
// [this process's rank in the group, the group's size, then the global rank of each member]
std::vector<int> mpi_group_info(int id);
// Runs one call to completion on the calling thread (throws KernelError naming the rank at fault).
void mpi_run(int id, const DistCall& call);
size_t mpi_piece_elements(int id, DistOp op, DistDType dtype);
void mpi_free(int id);
// At exit: MPI_Finalize when every group is healthy, MPI_Abort (the whole job) once one broke,
// nothing after a failure (exit_code != 0: mpirun stops the job when it sees the code).
void mpi_finish(int exit_code);

}  // namespace kestrel

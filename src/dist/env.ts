// Which rank this process is, read from the environment every launcher sets: torchrun/DeepSpeed
// (RANK, WORLD_SIZE, LOCAL_RANK), Open MPI (OMPI_COMM_WORLD_*), MPICH's hydra (PMI_*,
// MPI_LOCALRANKID) and Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID). No variable: one rank.

export type RankSource = 'torchrun' | 'openmpi' | 'mpich' | 'slurm' | 'single';

export interface RankEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  /** ranks on this machine (the shared-memory transport needs all of them here) */
  localWorldSize: number;
  /** where rank 0's rendezvous listens (MASTER_ADDR / MASTER_PORT; torchrun's defaults otherwise) */
  masterAddr: string;
  masterPort: number;
  source: RankSource;
}

type Env = Record<string, string | undefined>;

// [source, rank, world size, local rank, local world size] variable names, in precedence order
const SOURCES: [RankSource, string, string, string, string][] = [
  ['torchrun', 'RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE'],
  ['openmpi', 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_RANK', 'OMPI_COMM_WORLD_LOCAL_SIZE'],
  ['mpich', 'PMI_RANK', 'PMI_SIZE', 'MPI_LOCALRANKID', 'MPI_LOCALNRANKS'],
  ['slurm', 'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID', 'SLURM_NTASKS_PER_NODE'],
];

function integer(env: Env, name: string, min: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  // Slurm writes SLURM_NTASKS_PER_NODE as "4" or "4(x2)": the count before the repeat
  const text = name === 'SLURM_NTASKS_PER_NODE' ? raw.replace(/\(x\d+\)$/, '').split(',')[0] : raw;
  const v = Number(text);
  if (!Number.isInteger(v) || v < min) throw new Error(`environment: ${name}='${raw}' is not an integer >= ${min}`);
  return v;
}

/**
 * This process's rank, from the first launcher whose variables are set.
 * @example const { rank, worldSize } = rankFromEnv(); // RANK=1 WORLD_SIZE=2 -> 1, 2
 */
export function rankFromEnv(env: Env = process.env): RankEnv {
  const masterAddr = env.MASTER_ADDR || '127.0.0.1';
  const masterPort = integer(env, 'MASTER_PORT', 1) ?? 29500;
  if (masterPort > 65535) throw new Error(`environment: MASTER_PORT=${masterPort} is not a TCP port`);
  for (const [source, rankVar, sizeVar, localVar, localSizeVar] of SOURCES) {
    const rank = integer(env, rankVar, 0);
    const worldSize = integer(env, sizeVar, 1);
    if (rank === undefined && worldSize === undefined) continue;
    if (rank === undefined || worldSize === undefined)
      throw new Error(`environment: ${rank === undefined ? sizeVar : rankVar} is set but ${rank === undefined ? rankVar : sizeVar} is not (${source})`);
    if (rank >= worldSize) throw new Error(`environment: ${rankVar}=${rank} is not below ${sizeVar}=${worldSize}`);
    const localRank = integer(env, localVar, 0) ?? rank;
    const localWorldSize = integer(env, localSizeVar, 1) ?? worldSize;
    if (localRank >= localWorldSize) throw new Error(`environment: ${localVar}=${localRank} is not below ${localSizeVar}=${localWorldSize}`);
    return { rank, worldSize, localRank, localWorldSize, masterAddr, masterPort, source };
  }
  return { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr, masterPort, source: 'single' };
}

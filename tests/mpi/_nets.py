"""Small random networks and helpers shared by the MPI tests (no MPI at import time)."""
from __future__ import annotations

import numpy as np

from mpi_enum.model.domain import box_domain
from mpi_enum.model.problem import Problem
from mpi_enum.engine.search import enumerate_serial
from mpi_enum.model.network import Network, random_mlp


random_arrays = random_mlp  # one recipe: mpi_enum.network.random_mlp


def problem(d, widths, seed, tol=1e-9):
    a = random_arrays(d, widths, seed)
    L = len(widths) + 1
    net = Network([a[f"W{i}"] for i in range(L)], [a[f"b{i}"] for i in range(L)], a["input_lo"], a["input_hi"],
                  source=f"random_{d}_{seed}.npz", sha256="0" * 64)
    return Problem(net, box_domain(-np.ones(d), np.ones(d)), tol)


def serial_patterns(prob):
    regs, stats = enumerate_serial(prob)
    pats = sorted(np.packbits(np.frombuffer(b, dtype=np.uint8)).tobytes() for b, _, _, _ in regs)
    return pats, stats.layer_counts.copy()


def gathered_patterns(comm, res):
    pat = res["buffer"].arrays()[0]
    mine = [bytes(row) for row in pat]
    allp = comm.allgather(mine)
    lc = comm.allreduce(np.asarray(res["layer_counts"], dtype=np.int64))
    flat = [p for part in allp for p in part]
    return sorted(flat), lc

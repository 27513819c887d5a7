"""Toolchain check for the Python stack: h5py writes one file collectively over MPI-IO.

    mpiexec -n 2 python cmake/check_h5py_mpio.py [FILE.h5]

Every rank writes its own slab of one dataset (collective transfer); rank 0 reads the file
back and checks it. Exit 0 only if h5py has MPI support and the values are right.
"""
import sys

import numpy as np
from mpi4py import MPI

import h5py

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
path = sys.argv[1] if len(sys.argv) > 1 else "check_h5py_mpio.h5"
n = 1000

if not h5py.get_config().mpi:
    if rank == 0:
        print("h5py was built without MPI support", file=sys.stderr)
    sys.exit(1)

with h5py.File(path, "w", driver="mpio", comm=comm) as f:
    dset = f.create_dataset("values", (size * n,), dtype="f8")
    with dset.collective:
        dset[rank * n:(rank + 1) * n] = np.arange(rank * n, (rank + 1) * n, dtype="f8")
comm.Barrier()

ok = True
if rank == 0:
    with h5py.File(path, "r") as f:
        ok = bool(np.array_equal(f["values"][...], np.arange(size * n, dtype="f8")))
    print("h5py %s, HDF5 %s (parallel), %s: %d ranks wrote %d values collectively, %s" % (
        h5py.__version__, h5py.version.hdf5_version,
        MPI.Get_library_version().splitlines()[0].strip(), size, size * n,
        "all correct" if ok else "MISMATCH"))
ok = comm.bcast(ok, root=0)
sys.exit(0 if ok else 1)

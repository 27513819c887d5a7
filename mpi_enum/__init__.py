"""mpi_enum: exact, parallel enumeration of the activation regions of ReLU networks.

Serial kernels (:mod:`mpi_enum.engine`, :mod:`mpi_enum.lp`, :mod:`mpi_enum.network`,
:mod:`mpi_enum.domain`) hold no MPI at all; the parallel driver
(:mod:`mpi_enum.parallel`) takes the communicator as an argument.
"""

__version__ = "0.1.0"

"""Post-processing of result files: ``verify``, ``analyze``, ``plot``, ``convert``, the geometry
they share (:mod:`.geometry`) and the first-layer buckets that let ``verify`` and ``analyze``
stream a result of any size in bounded memory (:mod:`.buckets`).  Results are read only through :mod:`mpi_enum.io.reader`; no MPI.

May import: :mod:`mpi_enum.model`, :mod:`mpi_enum.loaders`, :mod:`mpi_enum.io`, numpy, scipy,
matplotlib.  Never the engine or the parallel driver (``verify`` is an independent oracle).
"""

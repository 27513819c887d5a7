"""Geometry of the enumerated regions: facets, the adjacency (dual) graph, linear regions,
vertices and volumes, and the decision boundary of 2-D partitions.

Modules (each owns one thing):

* :mod:`~mpi_enum.geometry.facets`: which hyperplanes of one region carry a facet
  (certificates first, then HiGHS LPs), with a witness point inside every facet;
* :mod:`~mpi_enum.geometry.exchange`: deterministic pattern hashes and the all-to-all hash
  partition that finds a stored region by its pattern on any number of ranks;
* :mod:`~mpi_enum.geometry.linear`: affine input-to-output maps, their comparison, linear
  regions (connected components of equal-map edges) and the count of distinct maps;
* :mod:`~mpi_enum.geometry.vertices`: vertices and exact volumes (qhull through scipy);
* :mod:`~mpi_enum.geometry.decision`: the decision boundary of 2-D partitions;
* :mod:`~mpi_enum.geometry.graph`: ``mpi-enum graph`` itself, which runs all of them over a
  result file's regions on a communicator and writes the datasets through
  :mod:`mpi_enum.io.graph_file`.

Layer: above :mod:`mpi_enum.post` (it reuses the charts and per-region affine maps of
:mod:`mpi_enum.post.geometry`, so the graph and ``verify``/``plot`` agree on what a region is),
below :mod:`mpi_enum.cli`.  May import :mod:`mpi_enum.model`, :mod:`mpi_enum.io`,
:mod:`mpi_enum.post.geometry`, numpy and scipy.  No ``mpi4py``: the communicator is handed in.
"""

"""The model layer: pure data, no file I/O, no MPI.

* :mod:`.network`: :class:`~.network.Network` (affine layers, forward pass, patterns), its
  validation, and the random-MLP recipe;
* :mod:`.domain`: :class:`~.domain.Domain` (box, polytope, plane, line, unbounded) in normalised
  coordinates ``y`` with ``x = x0 + E y``;
* :mod:`.problem`: :class:`~.problem.Problem`, the hidden layers composed with the domain map.

May import: numpy, scipy, :mod:`mpi_enum.errors`.  Imported by every other layer.
"""

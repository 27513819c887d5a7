"""The search: exact depth-first enumeration of one :class:`~mpi_enum.model.problem.Problem`.

* :mod:`.work`: :class:`~.work.WorkItem` (a subtree: decided bits + a certified ball) and
  :class:`~.work.Stats`;
* :mod:`.search`: :class:`~.search.Engine`, ``explore(item, emit, budget)`` returning the
  unexplored frontier (budgeted subtrees), and :func:`~.search.enumerate_serial`;
* :mod:`.native`: the compiled kernel (the extension ``_kernel``, built at install time from
  ``kernel/``: the search in C and every numeric decision constant), required;
* :mod:`.lp`: the HiGHS Chebyshev LP (the kernel's callback for the LPs it does not certify,
  and every LP for input dimension k > 32).

No MPI and no files.  May import: :mod:`mpi_enum.model`, numpy, highspy.
"""
from .search import Engine, enumerate_serial
from .work import Stats, WorkItem

__all__ = ["Engine", "Stats", "WorkItem", "enumerate_serial"]

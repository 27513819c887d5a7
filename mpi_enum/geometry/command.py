"""``mpi-enum graph``'s command-line side: run :func:`mpi_enum.geometry.graph.build_graph` on the
job's communicator, print its summary on rank 0, and turn failures into exit statuses (bad input:
one line from rank 0, exit 2; a write failure: exit 4; an unexpected error on any rank prints
its traceback and aborts the whole job, so no rank hangs).

May import: :mod:`mpi_enum.geometry.graph`, the base modules.  The communicator is handed in.
"""
from __future__ import annotations

import sys
import traceback

from ..console import abort_job, say
from ..errors import EXIT_BAD_INPUT, EXIT_IO, EXIT_OK, InputError, OutputError
from .graph import build_graph


def _summary(s, size):
    rate = s["graph_facets"] / max(s["graph_facet_seconds"], 1e-9)
    lines = [f"mpi-enum graph: {s['n_regions']} regions, {s['n_edges']} edges, {s['n_linear_regions']} linear "
             f"regions, {s['n_affine_maps']} distinct affine maps; {s['graph_facets']} facets in "
             f"{s['graph_seconds']:.2f} s ({rate:.0f} facets/s, {s['graph_lps']} LPs), "
             f"{s['graph_unmatched']} unmatched, {s['graph_one_sided']} one-sided, "
             f"{s['graph_degenerate']} degenerate, {size} ranks, io {s['io_mode']} -> {s['path']}"]
    if "decision_boundary_length" in s:
        lines.append(f"  decision boundary length {s['decision_boundary_length']:.6g} (input units)")
    if s.get("graph_vertex_failures"):
        lines.append(f"  warning: qhull could not build {s['graph_vertex_failures']} regions (volume NaN)")
    return "\n".join(lines)


def main(args, comm):
    """``mpi-enum graph`` on ``comm`` (every rank calls it); returns the exit status."""
    try:
        s = build_graph(args.out_h5, args.output, comm if comm.size > 1 else None, vertices=args.vertices,
                        force=args.force, seed=args.seed)
    except (InputError, OutputError) as exc:
        if comm.rank == 0:
            say(f"mpi-enum: error: {exc}", sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, InputError) else EXIT_IO
    except BaseException:
        say(f"mpi-enum: rank {comm.rank}: unexpected error, aborting the job:", sys.stderr)
        traceback.print_exc()
        if comm.size > 1:
            abort_job(comm, 1)
        return 1
    if comm.rank == 0:
        print(_summary(s, comm.size))
    return EXIT_OK

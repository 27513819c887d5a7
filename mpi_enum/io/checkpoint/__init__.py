"""Checkpoint / resume with exactly-once regions (format in ``docs/checkpoint.md``).

Modules: :mod:`.layout` (directory, meta, generations), :mod:`.journal` (append-only frames,
writer and reader), :mod:`.resume` (replay into open items), :mod:`.session` (the driver's
:class:`Checkpoint`).

The unit of commit is a *finished work item*: an item whose subtree is covered exactly by the
regions it emitted plus the frontier items (children) it handed on.  Every rank appends, for
every item it finishes, first the item's region rows to its ``.regions`` file and then one
checksummed record to its ``.journal`` file.  Nothing is ever rewritten.  On resume the union of
all journals is replayed: items reachable from the generation's roots through committed records
are done, their children that nobody finished are the open items of the next generation, and the
committed region rows are exactly the rows of the accepted records.  A region can therefore be
neither lost (its item is either committed, with its rows, or still open) nor counted twice (an
item finished twice is reported as an error, and a record that is not reachable from the roots,
e.g. a thief's record whose creator's record was lost in a crash, is ignored together with its
rows).

Layout of ``--checkpoint-dir``::

    gen{G}/meta.json        written last by rank 0 at the start of generation G (its presence
                            makes the generation valid): format, network sha256, domain, tol,
                            N, k, L, d, n_ranks, and "frozen": the committed journal lengths of
                            the previous generation, so late writes by a zombie are ignored
    gen{G}/roots.npy        (n, 2+k+words) float64 WorkItem.encode records: the open items at
                            the start of G (generation 0: the single root item)
    gen{G}/rank{R}.regions  fixed-size rows, dtype = RegionBuffer.dtype() (pattern, point,
                            radius, rank), append-only
    gen{G}/rank{R}.journal  frames [u32 length][u32 crc32][payload]; payload[0] = kind:
                            0 header (JSON), 1 item-done record, 2 sync marker (after an fsync)

Integration (the driver loop; ``ck`` is a no-op shell without ``--checkpoint-dir``)::

    from mpi_enum.io.checkpoint import Checkpoint
    from mpi_enum.parallel.stopper import Stopper

    stopper = Stopper(args.time_limit, args.checkpoint_interval)   # as early as possible
    eng = Engine(problem)
    sink = RegionSink(problem, spill_dir)
    ck = Checkpoint.setup(comm, problem, args.checkpoint_dir, eng, resume=args.resume)
    # collective; InputError on every rank (mismatching meta, corrupt checkpoint)
    ck.feed_old_regions(sink.buf)        # committed regions of earlier generations, this rank's share
    base_lc = ck.base_layer_counts()     # earlier generations' layer counts (rank 0), zeros elsewhere
    emit = ck.recorder(sink.buf)         # emit callback: appends to the buffer, keeps the item's rows

    lc0 = eng.stats.layer_counts.copy()
    items, top = top_partition(eng, comm.size, args.split_factor, roots=ck.roots)   # [] if already complete
    if comm.rank == 0:
        for reg in top:
            emit(*reg)
        ck.done(ck.roots, items, emit, eng.stats.layer_counts - lc0)   # the static expansion
    else:
        eng.stats.layer_counts[:] = lc0  # only rank 0 counts the expansion
    queue = [it for i, it in enumerate(items) if i % comm.size == comm.rank]

    while <work: own queue or steal>:
        item = <pop / steal>             # claims must be atomic: exactly one rank finishes an item
        lc0 = eng.stats.layer_counts.copy()
        children = eng.explore(item, emit, budget=budget, poll=poll)   # ALWAYS with a budget
        ck.done(item, children, emit, eng.stats.layer_counts - lc0)
        queue.extend(children)           # publish children only AFTER ck.done
        if stopper.due_checkpoint():
            ck.flush()                   # fsync + sync marker
        if stopper.should_stop():        # agree across ranks via the termination protocol
            break
    ck.close()                           # flush(fsync=True) + close
    layer_counts = eng.stats.layer_counts + base_lc
    # stopped: write the partial result (complete=False, stopped_reason=stopper.reason), exit 3

Every rank calls ``ck.done`` only for items it finished itself; an item stolen from another
rank's queue needs nothing special (its creation is in the victim's record; whoever finishes it
records it done).  Without a checkpoint dir ``ck.roots`` is ``[eng.root_item()]`` and ``done``,
``flush``, ``close``, ``feed_old_regions`` do nothing.  With ``--resume`` and an empty or missing
directory the run starts from scratch; without ``--resume`` a directory that already holds a
checkpoint is an error (never silently overwritten).
"""
from __future__ import annotations

from ..rows import Recorder
from .journal import Journal, read_journal
from .layout import (KIND_SYNC, CheckpointError, Shape, check_checkpoint_dir, generation_dir, list_generations,
                     make_meta, meta_for, remove_checkpoint, start_generation)
from .resume import Resume, load_checkpoint
from .session import Checkpoint

__all__ = ["Checkpoint", "CheckpointError", "Journal", "KIND_SYNC", "Recorder", "Resume", "Shape",
           "check_checkpoint_dir", "generation_dir", "list_generations", "load_checkpoint", "make_meta", "meta_for",
           "read_journal", "remove_checkpoint", "start_generation"]

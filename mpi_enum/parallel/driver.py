"""The parallel driver: static first-layer partition + depth-first search per rank.

The communicator is always passed in (never ``COMM_WORLD`` at import time).

1. Static partition, in two stages.  Stage 1: every rank expands the top of the search tree
   (the first-layer arrangement, deeper if needed) breadth-first with the same deterministic
   engine until there are at least P subtrees, and deals them round-robin: item i goes to rank
   i mod P (regions met here are kept by rank 0 only).  Stage 2: each rank expands its own share
   breadth-first until it holds at least ``split_factor`` items (regions met here are its own),
   and one allreduce gives the totals.  So the replicated part costs about P nodes rather than
   ``split_factor * P`` (in the scaling model of ``benchmarks/SCALING.md`` that is worth 9 points
   of efficiency at 16,384 ranks), no rank waits for another before its first work, and each
   stage is one checkpoint record per rank.  One rank: stage 1 alone, to ``split_factor``.
2. Each rank enumerates its subtrees depth-first with :class:`mpi_enum.engine.Engine`, in
   budgeted pieces; idle ranks steal the shallowest open subtrees through the RMA queues of
   :mod:`mpi_enum.parallel.rma`, and finished pieces are journaled by :mod:`mpi_enum.io.checkpoint`.
3. Results go to one HDF5 file through :func:`mpi_enum.io.results.write_result`.

Configuration comes in as a :class:`mpi_enum.options.RunOptions` (:func:`run_parallel`) or as
plain keyword arguments (:func:`run_dynamic`); nothing here reads the environment.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np

from ..engine import Engine, WorkItem
from ..io.checkpoint import Checkpoint
from ..io.buffer import RegionBuffer
from ..options import CHECKPOINT_DEFER_SECONDS, DEFAULT_SPILL_BYTES
from ..phases import NO_PHASES
from .rma import TOTAL_CREDIT, RmaWork, SerialWork


# the longest one explore call runs (then its frontier is committed and published): bounds the
# latency of a stop request (signal, --time-limit) whatever one node costs (d = 784: milliseconds)
ITEM_SECONDS = 1.0

def top_partition(engine, n_parts, factor=16, roots=None, max_steps=100000):
    """Expand the tree top breadth-first until >= factor * n_parts items (deterministic).

    Starts from ``roots`` (default: the root item; a resumed run starts from its open items).
    Returns (items, regions) where regions are those completed during the expansion, as
    (bits, yc, r, ranks) tuples.
    """
    target = max(1, factor * n_parts)
    regions = []
    queue = deque([engine.root_item()] if roots is None else roots)
    steps = 0
    while queue and len(queue) < target and steps < max_steps:
        item = queue.popleft()
        steps += 1
        queue.extend(engine.explore(item, lambda b, y, r, rk: regions.append((b, y, r, rk)), budget=1))
    return list(queue), regions


def _expand_share(eng, share, factor, emit, ck, max_steps=100000):
    """Stage 2 of the static partition: this rank's items expanded breadth-first until it holds
    >= ``factor`` (deterministic).  Emits the regions met, commits the expansion as one checkpoint
    record, passes the credit down.  Returns (items, credit of finished subtrees, regions, first-layer
    cells)."""
    queue = deque(share)
    credit = steps = 0
    n_reg = [0]

    def count(*reg):
        n_reg[0] += 1
        emit(*reg)

    lc0 = eng.stats.layer_counts.copy()
    while queue and len(queue) < factor and steps < max_steps:
        item = queue.popleft()
        steps += 1
        kids = eng.explore(item, count, budget=1)
        credit += split_credit(item, kids)
        queue.extend(kids)
    items = list(queue)
    dlc = eng.stats.layer_counts - lc0
    if share:
        ck.done(share, items, emit, dlc)  # the stage-1 items done, these open (shared ones cancel)
    return items, credit, n_reg[0], int(dlc[0])


CREDIT = TOTAL_CREDIT  # the whole work, split among the items (progress estimate; exact in float64 and int64)


def deal_credit(items, total=CREDIT):
    """Give the static items equal shares of ``total`` (attribute ``credit``, an int)."""
    if items:
        share = total // len(items)
        for it in items:
            it.credit = share
        items[0].credit += total - share * len(items)


def split_credit(item, children) -> int:
    """Pass an explored item's credit on to its children (evenly; the remainder to the first);
    returns the credit completed: all of it when the item's subtree is finished (no children).
    The credit completed over all ranks divided by :data:`CREDIT` estimates the fraction of the
    work done (exactly 1 at the end)."""
    w = int(getattr(item, "credit", 0))
    if not children:
        return w
    share = w // len(children)
    for c in children:
        c.credit = share
    children[0].credit += w - share * len(children)
    return 0


def run_dynamic(comm, problem, split_factor=16, progress=None, spill_dir=None, spill_bytes=None, skew=False, budget=None,
                budget_max=1 << 16, poll_every=None, low=4, max_steal=8, delay=0.0, fail=None, seed=0, log=None,
                stop=None, on_done=None, checkpoint_dir=None, resume=False, stopper=None, phases=NO_PHASES,
                checkpoint_defer=None, checkpoint_ephemeral=False):
    """Static partition + budgeted depth-first search + RMA work stealing.  Returns a result dict.

    ``budget``: initial node budget per explore call (adaptive: doubled while nobody takes the
    published items, halved when the published queue was found drained), ``None`` for the default
    (64; unlimited with one rank).  ``spill_bytes``: region rows held in memory per rank before
    they spill to ``spill_dir`` (None: 64 MiB).  ``poll_every``: search nodes between MPI polls
    (None: 256, about 0.5 ms of the compiled kernel).  ``skew``: deal every static item to rank 0
    (tests, benchmarks).  ``delay``: after every item, sleep that many seconds per search node it explored
    (tests: a run's length then depends on its node count, not on the kernel's speed).
    ``fail``: ``(rank, nodes)``: that rank raises RuntimeError after that many nodes (tests).

    Hooks for checkpoint/resume (an item is the unit of commit): ``on_done(item, frontier)`` is
    called after every explored item, *before* its frontier is counted or published;
    ``stop()`` is asked after every item; when it returns true every rank stops after its
    current item (``complete`` is then False and the open items are the frontier).

    ``checkpoint_defer``, ``checkpoint_ephemeral``: a deferred checkpoint (see
    :mod:`mpi_enum.io.checkpoint.session`; None: every commit is written at once).

    ``comm`` None: this process alone (no MPI at all).  ``phases``: a
    :class:`~mpi_enum.phases.Phases` that the driver's steps add their seconds to.
    """
    t0 = time.perf_counter()
    with phases("engine and region buffer"):
        eng = Engine(problem)
        if spill_bytes is None:  # memory held per rank before regions spill to --spill-dir
            spill_bytes = DEFAULT_SPILL_BYTES
        buf = RegionBuffer(problem.pattern_bytes, problem.domain.d, problem.L, spill_dir, spill_bytes)
    try:
        return _run(comm, problem, eng, buf, t0, split_factor, progress, skew, budget, budget_max, poll_every, low,
                    max_steal, delay, fail, seed, log, stop, on_done, checkpoint_dir, resume, stopper, phases,
                    checkpoint_defer, checkpoint_ephemeral)
    except BaseException:
        buf.close()  # its scratch file goes on every exit path
        raise


def _run(comm, problem, eng, buf, t0, split_factor, progress, skew, budget, budget_max, poll_every, low, max_steal,
         delay, fail, seed, log, stop, on_done, checkpoint_dir, resume, stopper, phases, checkpoint_defer,
         checkpoint_ephemeral):
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    with phases("checkpoint setup"):
        # collective; raises InputError on every rank together when the checkpoint is unusable
        ck = Checkpoint.setup(comm, problem, checkpoint_dir, eng, resume=resume, defer=checkpoint_defer,
                              ephemeral=checkpoint_ephemeral)
        n_old = ck.feed_old_regions(buf)  # this rank's share of the checkpoint's regions
    emit = ck.recorder(buf)
    if poll_every is None:  # the engine's hint: ~0.5 ms between MPI polls in low dimension, and far
        poll_every = eng.poll_every_hint  # fewer nodes above k = 32, where one node costs milliseconds
    if stopper is not None and stop is None:
        stop = stopper.should_stop
    lc0 = eng.stats.layer_counts.copy()
    t_top = time.perf_counter()
    # stage 1, the same on every rank: the top of the tree until there are >= P items (one per
    # rank; with one rank, all split_factor items)
    items, top_regions = top_partition(eng, size, split_factor if size == 1 else 1, roots=ck.roots)
    if rank == 0:
        for reg in top_regions:
            emit(*reg)
        if ck.roots:
            ck.done(ck.roots, items, emit, eng.stats.layer_counts - lc0)
    if rank != 0:
        eng.stats.layer_counts[:] = 0
        eng.stats.regions = 0
    deal_credit(items)
    if skew:
        mine = list(items) if rank == 0 else []
    else:
        mine = [it for i, it in enumerate(items) if i % size == rank]
    n_stage1 = len(items)
    n_static, regions0, l1_0, credit0 = len(items), len(top_regions), int(eng.stats.layer_counts[0]), 0
    if size > 1:
        # stage 2, in parallel: each rank expands its own share until it holds >= split_factor items
        # (the regions met are its own), then one allreduce gives the totals
        mine, credit0, n_reg2, dl1 = _expand_share(eng, mine, split_factor, emit, ck)
        n_static, regions0, l1_0 = (int(v) for v in comm.allreduce(
            np.array([len(mine), n_reg2 + (regions0 if rank == 0 else 0), int(eng.stats.layer_counts[0])], np.int64)))
    phases.add("static partition", time.perf_counter() - t_top)
    top_nodes, top_lps = eng.stats.nodes, eng.stats.lps
    progress_kw = {"l1": l1_0, "old_regions": ck.old_regions}
    rec_words = WorkItem.record_size(problem.k, problem.N)
    t_queues = time.perf_counter()
    if size == 1:
        work = SerialWork(reversed(mine), low=low, progress=progress, count=lambda: buf.count - n_old, log=log,
                          **progress_kw)
        local = []
    else:
        work = RmaWork(comm, rec_words, problem.k, list(reversed(mine)), n_static, regions0=regions0,
                       low=low, max_steal=max_steal, progress=progress, seed=seed, log=log, **progress_kw)
        local = list(work.leftover)
        if credit0:
            work.done(credit=credit0)  # the subtrees that stage 2 finished
    phases.add("work queues (RMA windows)", time.perf_counter() - t_queues)
    if budget is None:
        # a lone rank also works in budgeted items, so that a checkpoint commits often and a stop
        # request (signal, time limit) is honoured within about a second
        budget = 64 if size > 1 else (4096 if ck.enabled else 1 << 16)
    b_min = 1 if budget is None else max(1, min(budget, 64))
    poll = work.poll if (size > 1 or progress) else None
    t_start = time.perf_counter()
    try:
        stopped, busy, n_items = _owner_loop(
            eng, work, local, emit, ck, buf, B=budget, b_min=b_min, budget_max=budget_max, poll=poll,
            poll_every=poll_every, low=low, delay=delay, fail=fail, top_nodes=top_nodes,
            on_done=on_done, stop=stop, stopper=stopper)
    except BaseException:
        ck.close()  # what this rank committed is written and fsynced on every exit path
        raise
    t_end = time.perf_counter()
    phases.add("search", t_end - t_start)
    work.close()
    my_reason = (stopper.reason if stopper is not None else "") if stopped else ""
    if size > 1:
        reasons = comm.allgather((my_reason, bool(stopped)))  # one collective: any stop stops all
        stopped = any(s for _, s in reasons) or any(r for r, _ in reasons)
        my_reason = next((r for r, _ in reasons if r), my_reason)
    phases.add("work queues closed, stop agreed", time.perf_counter() - t_end)
    t_end = time.perf_counter()
    ck.close(complete=not stopped)  # after the agreement: a stopped run's journals are all written
    phases.add("checkpoint close", time.perf_counter() - t_end)
    wall = time.perf_counter() - t_start
    st = eng.stats.as_dict()
    ws = work.stats
    stats = {"nodes": st["nodes"], "lps": st["lps"], "regions": buf.count,
             "busy_seconds": busy, "idle_seconds": ws["idle_seconds"],
             "steals_attempted": ws["steals_attempted"], "steals_succeeded": ws["steals_succeeded"],
             "items_given": ws["items_given"], "items_stolen": ws.get("items_stolen", 0),
             "items_explored": n_items, "items_static": len(mine), "poll_seconds": ws["poll_seconds"],
             "polls": ws["polls"] if "polls" in ws else 0, "run_seconds": wall,
             "top_nodes": top_nodes, "top_lps": top_lps, "static_items_stage1": n_stage1, "static_items_total": n_static}
    reason = (my_reason or "stopped") if stopped else ""
    return {"buffer": buf, "stats": stats, "layer_counts": eng.stats.layer_counts + ck.base_layer_counts(),
            "complete": not stopped, "stopped_reason": reason, "wall_start": t0,
            "open_items_local": local, "checkpointed": ck.enabled, "journal_written": ck.written,
            "old_regions": ck.old_regions}


def _owner_loop(eng, work, local, emit, ck, buf, *, B, b_min, budget_max, poll, poll_every, low, delay,
                fail, top_nodes, on_done, stop, stopper):
    """The owner loop of :func:`run_dynamic`.  Returns (stopped, busy seconds, items explored)."""
    rank, size = work.rank, work.size
    n_items = 0
    busy = 0.0
    while True:
        if not local:
            got = work.get()
            if got is None:
                break
            local.extend(got)
        item = local.pop()
        tb = time.perf_counter()
        reg0, nodes0 = buf.count, eng.stats.nodes
        lc0 = eng.stats.layer_counts.copy()
        frontier = eng.explore(item, emit, budget=B, poll=poll, poll_every=poll_every, emit_batch=emit.batch,
                               seconds=ITEM_SECONDS)
        n_items += 1
        if delay:
            time.sleep(delay * (eng.stats.nodes - nodes0))
        if fail is not None and rank == fail[0] and eng.stats.nodes - top_nodes >= fail[1]:
            raise RuntimeError(f"rank {rank}: injected failure after {eng.stats.nodes - top_nodes} nodes")
        dlc = eng.stats.layer_counts - lc0
        ck.done(item, frontier, emit, dlc)  # commit before publishing
        if stopper is not None and stopper.due_checkpoint():
            ck.flush()
        if on_done is not None:
            on_done(item, frontier)
        work.done(finished=1, created=len(frontier), regions=buf.count - reg0, credit=split_credit(item, frontier),
                  l1=int(dlc[0]))
        if stop is not None and not work.stopped and stop():
            work.request_stop()
        if work.stopped:
            local.extend(frontier)
            busy += time.perf_counter() - tb
            break
        if frontier:
            local.extend(frontier)
            # frontier is shallowest first; offer the shallowest of everything held
            # (the front of `local`) to idle ranks
            work.put(local)
            if B is not None and size > 1:
                q = work.last_q
                if q >= low:
                    B = min(B * 2, budget_max)  # nobody is hungry: fewer, longer items
                elif q == 0:
                    B = max(B // 2, b_min)  # the published items were all taken
        busy += time.perf_counter() - tb
    return work.stopped, busy, n_items


def run_parallel(comm, problem, options, stopper=None, phases=NO_PHASES, ephemeral_checkpoint=False):
    """Entry point of the CLI and the Python API: :func:`run_dynamic` configured by ``options``
    (a :class:`mpi_enum.options.RunOptions`).  ``comm`` None: this process alone.  The checkpoint
    is deferred by :data:`~mpi_enum.options.CHECKPOINT_DEFER_SECONDS`; ``ephemeral_checkpoint``:
    it is the default one, removed once the result is written (see
    :mod:`mpi_enum.io.checkpoint.session`)."""
    o = options
    return run_dynamic(comm, problem, split_factor=o.split_factor, progress=o.progress, spill_dir=o.spill_dir,
                       spill_bytes=o.spill_limit, skew=o.skew, budget=o.budget, delay=o.node_delay,
                       fail=o.fail_after, checkpoint_dir=o.checkpoint_dir, resume=o.resume, stopper=stopper,
                       phases=phases, checkpoint_defer=CHECKPOINT_DEFER_SECONDS,
                       checkpoint_ephemeral=ephemeral_checkpoint)

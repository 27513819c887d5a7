"""Checkpoint / resume: exactly-once regions under random interruptions (serial, fast).

The tests simulate the parallel driver in one process: several fake ranks, each with its own
Engine and Journal, run budgeted items, steal items from each other's queues at random, and are
"killed" at random points (clean stop, kill -9, kill between the regions write and the journal
record, torn last record, garbage tail, lost region rows).  Resuming, possibly with a different
number of ranks and over several generations, must reproduce an uninterrupted
``enumerate_serial`` run exactly: same pattern set, no duplicates, same layer counts.
"""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from mpi_enum.io import checkpoint as C
from mpi_enum.model.domain import box_domain
from mpi_enum.engine.search import Engine, enumerate_serial
from mpi_enum.model.problem import Problem
from mpi_enum.errors import InputError
from mpi_enum.model.network import Network
from mpi_enum.io.results import RegionBuffer
from mpi_enum.parallel.driver import top_partition
from mpi_enum.parallel.stopper import Stopper


# ----------------------------------------------------------------------------- fixtures

def make_problem(widths=(2, 8, 8), seed=0, sha="net-a", tol=1e-9, box=1.0):
    rng = np.random.default_rng(seed)
    dims = list(widths) + [1]
    Ws = [rng.normal(size=(dims[i + 1], dims[i])) for i in range(len(dims) - 1)]
    bs = [rng.normal(size=dims[i + 1]) * 0.5 for i in range(len(dims) - 1)]
    net = Network(Ws, bs, sha256=sha, source="test.npz")
    d = widths[0]
    return Problem(net, box_domain(-box * np.ones(d), box * np.ones(d)), tol)


_REF = {}


def reference(problem, key):
    if key not in _REF:
        out, st = enumerate_serial(problem)
        pats = [np.packbits(np.frombuffer(b, dtype=np.uint8)).tobytes() for b, _, _, _ in out]
        _REF[key] = (sorted(pats), st.layer_counts.copy())
    return _REF[key]


def _frames(path):
    """[(start, end)] of the well-formed frames of a journal file."""
    data = open(path, "rb").read()
    out, pos = [], 0
    while pos + 8 <= len(data):
        n, _ = struct.unpack_from("<II", data, pos)
        if n == 0 or pos + 8 + n > len(data):
            break
        out.append((pos, pos + 8 + n))
        pos += 8 + n
    return out


class Sim:
    """One generation of a fake P-rank run (the driver loop of checkpoint.py's docstring)."""

    def __init__(self, problem, ckdir, n_ranks, rng):
        self.p, self.dir, self.n, self.rng = problem, ckdir, n_ranks, rng
        self.shape = C.Shape.of(problem)
        meta = C.make_meta(problem, n_ranks)
        res = C.load_checkpoint(ckdir, meta)
        self.res = res
        self.finished = res.complete
        if res.complete:
            return
        engines = [Engine(problem) for _ in range(n_ranks)]
        roots = res.open_items if not res.fresh else [engines[0].root_item()]
        self.gen = res.generation
        C.start_generation(ckdir, self.gen, meta, roots, self.shape, res.frozen)
        self.engines = engines
        self.journals = [C.Journal(ckdir, self.gen, r, self.shape) for r in range(n_ranks)]
        self.recs = [C.Recorder(problem.domain, self.shape.row_dtype) for _ in range(n_ranks)]
        # static expansion on every rank; rank 0 records it
        e0 = engines[0]
        lc0 = e0.stats.layer_counts.copy()
        items, top = top_partition(e0, n_ranks, int(rng.choice([1, 2, 4])), roots=roots)
        for reg in top:
            self.recs[0](*reg)
        self.journals[0].item_done(roots, items, self.recs[0].take(), e0.stats.layer_counts - lc0)
        self.queues = [[it for i, it in enumerate(items) if i % n_ranks == r] for r in range(n_ranks)]
        self.steals = 0

    def busy(self):
        return any(self.queues)

    def step(self, partial=False):
        """One item on a random rank (stealing the victim's oldest item when idle)."""
        rng = self.rng
        r = int(rng.integers(self.n))
        q = self.queues[r]
        if not q or rng.random() < 0.3:  # idle, or a thief anyway
            victims = [v for v in range(self.n) if self.queues[v]]
            v = victims[int(rng.integers(len(victims)))]
            q.append(self.queues[v].pop(0))
            self.steals += 1
        item = q.pop()
        eng, rec, j = self.engines[r], self.recs[r], self.journals[r]
        lc0 = eng.stats.layer_counts.copy()
        children = eng.explore(item, rec, budget=int(rng.integers(1, 25)))
        if partial:  # killed between the regions write and the journal record
            j.append_rows(rec.take())
            return
        j.item_done(item, children, rec.take(), eng.stats.layer_counts - lc0, {"nodes": 1})
        q.extend(children)  # published only after the record
        if rng.random() < 0.1:
            j.flush()

    def close(self, fsync):
        for j in self.journals:
            j.close(fsync=fsync)


def damage(sim, mode, rng):
    """Apply a crash mode after the ranks stopped; returns a description."""
    gdir = C.generation_dir(sim.dir, sim.gen)
    r = int(rng.integers(sim.n))
    jpath = os.path.join(gdir, f"rank{r}.journal")
    rpath = os.path.join(gdir, f"rank{r}.regions")
    fr = _frames(jpath)
    if mode == "torn" and len(fr) > 1:
        s, e = fr[-1]
        cut = int(rng.integers(s + 1, e))
        with open(jpath, "r+b") as f:
            f.truncate(cut)
    elif mode == "lost_tail" and len(fr) > 1:  # power loss: several records never reached the disk
        s = fr[int(rng.integers(1, len(fr)))][0]
        with open(jpath, "r+b") as f:
            f.truncate(s)
    elif mode == "rows_zeroed":  # power loss: unsynced region pages come back as zeros
        data = open(jpath, "rb").read()
        synced = 0
        for s, e in fr:
            if data[s + 8] == C.KIND_SYNC:
                synced = struct.unpack_from("<Q", data, s + 16)[0]
        row = sim.shape.row_dtype.itemsize
        size = os.path.getsize(rpath)
        if size > synced * row:
            start = int(rng.integers(synced * row, size))
            with open(rpath, "r+b") as f:
                f.seek(start)
                f.write(bytes(min(size - start, int(rng.integers(1, 3 * row)))))
    elif mode == "synced_rows_flipped":  # a disk fault inside rows that were synced long ago
        data = open(jpath, "rb").read()
        synced = 0
        for s, e in fr:
            if data[s + 8] == C.KIND_SYNC:
                synced = struct.unpack_from("<Q", data, s + 16)[0]
        row = sim.shape.row_dtype.itemsize
        if synced:
            with open(rpath, "r+b") as f:
                f.seek(int(rng.integers(0, synced * row)))
                b = f.read(1)
                f.seek(-1, 1)
                f.write(bytes([b[0] ^ 0x5A]))
    elif mode == "garbage":
        with open(jpath, "ab") as f:
            f.write(rng.integers(0, 256, size=int(rng.integers(1, 200)), dtype=np.uint8).tobytes())
    elif mode == "regions_cut":
        size = os.path.getsize(rpath)
        if size:
            with open(rpath, "r+b") as f:
                f.truncate(int(rng.integers(0, size)))
    elif mode == "flip":  # a bit flip in the last frame: it must fail its crc
        if len(fr) > 1:
            s, e = fr[-1]
            with open(jpath, "r+b") as f:
                f.seek(int(rng.integers(s + 8, e)))
                b = f.read(1)
                f.seek(-1, 1)
                f.write(bytes([b[0] ^ 0x10]))
    return f"{mode} rank{r}"


def collect(ckdir, problem, size=1):
    res = C.load_checkpoint(ckdir, C.make_meta(problem))
    pats = []
    for r in range(size):
        for rows in res.iter_rows(r, size, batch=7):
            pats += [row.tobytes() for row in rows["pattern"]]
    return res, pats


def check_exact(ckdir, problem, key, size=1):
    ref_pats, ref_lc = reference(problem, key)
    res, pats = collect(ckdir, problem, size)
    assert res.complete and not res.open_items
    assert len(pats) == len(set(pats)), "a region was committed twice"
    assert sorted(pats) == ref_pats
    assert res.n_regions == len(ref_pats)
    np.testing.assert_array_equal(res.layer_counts, ref_lc)
    return res


# ----------------------------------------------------------------------------- the randomized loop

MODES = ["clean", "kill", "between", "torn", "garbage", "regions_cut", "flip", "lost_tail", "rows_zeroed",
         "synced_rows_flipped"]


def resume_until_finished(problem, ckdir, rng, size=2, rounds=None):
    """Resume the checkpoint on ``size`` simulated ranks, without faults, until it is finished
    (at most ``rounds`` resumptions; None: no limit)."""
    n = 0
    while rounds is None or n < rounds:
        sim = Sim(problem, ckdir, size, rng)
        if sim.finished:
            return
        while sim.busy():
            sim.step()
        sim.close(fsync=True)
        n += 1


def run_interrupted(problem, ckdir, seed, max_crashes=4, crash_p=0.06):
    rng = np.random.default_rng(seed)
    crashes = 0
    log = []
    for _ in range(max_crashes + 2):
        sim = Sim(problem, ckdir, int(rng.integers(1, 5)), rng)
        if sim.finished:
            break
        crashed = False
        while sim.busy():
            if crashes < max_crashes and rng.random() < crash_p:
                mode = MODES[int(rng.integers(len(MODES)))]
                if mode == "between":
                    sim.step(partial=True)
                sim.close(fsync=(mode == "clean"))
                log.append(damage(sim, mode, rng))
                crashes += 1
                crashed = True
                break
            sim.step()
        if not crashed:
            sim.close(fsync=True)
    return log


@pytest.mark.parametrize("seed", range(10))
def test_random_interruptions_exact(tmp_path, seed):
    problem = make_problem((2, 8, 8), seed=100 + seed % 3)
    ckdir = str(tmp_path / "ck")
    log = run_interrupted(problem, ckdir, seed)
    res = check_exact(ckdir, problem, ("small", 100 + seed % 3), size=1 + seed % 3)
    assert res.complete, log


def test_random_interruptions_three_layers(tmp_path):
    problem = make_problem((3, 6, 6, 5), seed=7)
    ckdir = str(tmp_path / "ck")
    run_interrupted(problem, ckdir, seed=11, max_crashes=3, crash_p=0.02)
    check_exact(ckdir, problem, ("deep", 7), size=3)


def test_uninterrupted_matches_and_resume_of_complete_is_noop(tmp_path):
    problem = make_problem((2, 8, 8), seed=100)
    ckdir = str(tmp_path / "ck")
    rng = np.random.default_rng(0)
    sim = Sim(problem, ckdir, 3, rng)
    while sim.busy():
        sim.step()
    sim.close(fsync=True)
    assert sim.steals > 0
    check_exact(ckdir, problem, ("small", 100), size=2)
    again = Sim(problem, ckdir, 2, rng)
    assert again.finished
    assert C.list_generations(ckdir) == [(0, True)]  # no new generation for a complete checkpoint


def test_damaged_synced_rows_are_re_enumerated(tmp_path):
    """Issue 12 row 7: bytes flipped in rows that were already synced must not reach the result:
    the damaged record fails its rows' crc on resume, its item is explored again, and the final
    pattern set is exact (no duplicate, none missing, none spurious)."""
    problem = make_problem((2, 10, 10), seed=107)
    ckdir = str(tmp_path / "ck")
    rng = np.random.default_rng(7)
    sim = Sim(problem, ckdir, 2, rng)
    for _ in range(12):
        if sim.busy():
            sim.step()
    for j in sim.journals:
        j.flush()  # everything so far is synced
    sim.close(fsync=True)
    gdir = C.generation_dir(ckdir, sim.gen)
    rpath = os.path.join(gdir, "rank0.regions")
    assert os.path.getsize(rpath) > 0
    with open(rpath, "r+b") as f:  # the first row's pattern byte
        b = f.read(1)
        f.seek(0)
        f.write(bytes([b[0] ^ 0xFF]))
    res = C.load_checkpoint(ckdir, C.make_meta(problem))
    assert any("damaged region rows" in n for n in res.notes), res.notes
    resume_until_finished(problem, ckdir, rng, rounds=6)
    check_exact(ckdir, problem, ("synced_flip", 107))


def test_orphan_record_is_ignored(tmp_path):
    """A thief's committed record whose creator's record was lost (power loss) is ignored."""
    problem = make_problem((2, 8, 8), seed=101)
    ckdir = str(tmp_path / "ck")
    rng = np.random.default_rng(5)
    sim = Sim(problem, ckdir, 2, rng)
    # rank 0 finishes an item with a budget so that it has children; rank 1 steals and finishes one
    for _ in range(50):
        q0 = sim.queues[0]
        item = q0.pop()
        eng, rec = sim.engines[0], sim.recs[0]
        lc0 = eng.stats.layer_counts.copy()
        children = eng.explore(item, rec, budget=2)
        sim.journals[0].item_done(item, children, rec.take(), eng.stats.layer_counts - lc0)
        q0.extend(children)
        if children:
            break
    assert children
    stolen = q0.pop()
    e1, r1 = sim.engines[1], sim.recs[1]
    lc0 = e1.stats.layer_counts.copy()
    grand = e1.explore(stolen, r1, budget=3)
    sim.journals[1].item_done(stolen, grand, r1.take(), e1.stats.layer_counts - lc0)
    sim.close(fsync=True)
    # power loss: rank 0's last record never reached the disk, rank 1's did
    jpath = os.path.join(C.generation_dir(ckdir, 0), "rank0.journal")
    s, _ = [f for f in _frames(jpath) if True][-2]  # the frame before the final sync marker
    with open(jpath, "r+b") as f:
        f.truncate(s)
    res = C.load_checkpoint(ckdir, C.make_meta(problem))
    assert res.n_ignored_records >= 1
    assert any("not reachable" in n for n in res.notes)
    resume_until_finished(problem, ckdir, rng)
    check_exact(ckdir, problem, ("small", 101))


def test_zombie_writes_after_resume_are_ignored(tmp_path):
    """Records appended to an old generation after it was frozen by a resume do not count."""
    problem = make_problem((2, 8, 8), seed=102)
    ckdir = str(tmp_path / "ck")
    rng = np.random.default_rng(3)
    old = Sim(problem, ckdir, 2, rng)
    for _ in range(5):
        old.step()
    new = Sim(problem, ckdir, 2, rng)  # resume while `old` is still alive
    while old.busy():  # the zombie finishes everything in gen0
        old.step()
    old.close(fsync=True)
    while new.busy():
        new.step()
    new.close(fsync=True)
    check_exact(ckdir, problem, ("small", 102))


# ----------------------------------------------------------------------------- errors

def test_item_done_twice_raises(tmp_path):
    problem = make_problem((2, 8, 8), seed=100)
    ckdir = str(tmp_path / "ck")
    shape = C.Shape.of(problem)
    eng = Engine(problem)
    root = eng.root_item()
    C.start_generation(ckdir, 0, C.make_meta(problem), [root], shape)
    js = [C.Journal(ckdir, 0, r, shape) for r in range(3)]
    children = eng.explore(root, lambda *a: None, budget=2)
    assert len(children) >= 1
    js[0].item_done(root, children, None)
    for j in js[1:]:
        j.item_done(children[0], [], None)
    for j in js:
        j.close()
    with pytest.raises(C.CheckpointError, match="finished twice"):
        C.load_checkpoint(ckdir, C.make_meta(problem))


def test_meta_mismatch_is_input_error(tmp_path):
    problem = make_problem((2, 8, 8), seed=100)
    ckdir = str(tmp_path / "ck")
    ck = C.Checkpoint.setup(None, problem, ckdir, Engine(problem), resume=False)
    ck.close()
    for other, what in [(make_problem((2, 8, 8), seed=100, sha="net-b"), "network"),
                        (make_problem((2, 8, 8), seed=100, tol=1e-6), "--tol"),
                        (make_problem((2, 8, 8), seed=100, box=2.0), "domain")]:
        with pytest.raises(InputError, match=what):
            C.load_checkpoint(ckdir, C.make_meta(other))
        with pytest.raises(InputError, match=what):
            C.check_checkpoint_dir(ckdir, C.make_meta(other), resume=True)
        with pytest.raises(InputError, match=what):
            C.Checkpoint.setup(None, other, ckdir, Engine(other), resume=True)
    # the same inputs resume fine; a fresh run into a used directory is refused
    C.check_checkpoint_dir(ckdir, C.make_meta(problem), resume=True)
    with pytest.raises(InputError, match="--resume"):
        C.Checkpoint.setup(None, problem, ckdir, Engine(problem), resume=False)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        C.check_checkpoint_dir(str(f), C.make_meta(problem), resume=True)


def test_deleted_generation_is_detected(tmp_path):
    problem = make_problem((2, 8, 8), seed=100)
    ckdir = str(tmp_path / "ck")
    rng = np.random.default_rng(1)
    for _ in range(2):
        sim = Sim(problem, ckdir, 2, rng)
        for _ in range(3):
            sim.step()
        sim.close(fsync=True)
    import shutil

    shutil.rmtree(C.generation_dir(ckdir, 0))
    with pytest.raises(C.CheckpointError, match="first generation"):
        C.load_checkpoint(ckdir, C.make_meta(problem))


# ----------------------------------------------------------------------------- the driver API

def _driver(problem, ckdir, resume, stop_after=None, budget=5, size_hint=1):
    """The module docstring's driver loop, serial (comm=None)."""
    eng = Engine(problem)
    buf = RegionBuffer(problem.pattern_bytes, problem.domain.d, problem.L)
    ck = C.Checkpoint.setup(None, problem, ckdir, eng, resume=resume)
    ck.feed_old_regions(buf)
    base_lc = ck.base_layer_counts()
    emit = ck.recorder(buf)
    lc0 = eng.stats.layer_counts.copy()
    items, top = top_partition(eng, size_hint, 4, roots=ck.roots)
    for reg in top:
        emit(*reg)
    ck.done(ck.roots, items, emit, eng.stats.layer_counts - lc0)
    queue = list(reversed(items))
    stopper = Stopper(time_limit=None, install=False)
    n = 0
    while queue:
        item = queue.pop()
        lc0 = eng.stats.layer_counts.copy()
        children = eng.explore(item, emit, budget=budget)
        ck.done(item, children, emit, eng.stats.layer_counts - lc0)
        queue.extend(children)
        n += 1
        if stop_after is not None and n >= stop_after:
            stopper.request("test")
        if stopper.due_checkpoint():
            ck.flush()
        if stopper.should_stop():
            break
    ck.close()
    return buf, eng.stats.layer_counts + base_lc, not queue


def test_checkpoint_api_serial_driver(tmp_path):
    problem = make_problem((2, 10, 10), seed=104)
    ref_pats, ref_lc = reference(problem, ("api", 104))
    ckdir = str(tmp_path / "ck")
    buf, lc, complete = _driver(problem, ckdir, resume=False, stop_after=7)
    assert not complete
    partial = sorted(p.tobytes() for p in buf.arrays()[0])
    assert len(partial) == len(set(partial)) and set(partial) <= set(ref_pats)
    rounds = 0
    while not complete:
        buf, lc, complete = _driver(problem, ckdir, resume=True, stop_after=5)
        rounds += 1
    pats = [p.tobytes() for p in buf.arrays()[0]]
    assert rounds >= 2
    assert sorted(pats) == ref_pats
    np.testing.assert_array_equal(lc, ref_lc)
    # resuming the complete checkpoint reproduces the result without any work
    buf2, lc2, complete2 = _driver(problem, ckdir, resume=True)
    assert complete2
    assert sorted(p.tobytes() for p in buf2.arrays()[0]) == ref_pats
    np.testing.assert_array_equal(lc2, ref_lc)
    # --resume with an empty directory starts from scratch
    buf3, lc3, complete3 = _driver(problem, str(tmp_path / "fresh"), resume=True)
    assert complete3 and sorted(p.tobytes() for p in buf3.arrays()[0]) == ref_pats


def test_disabled_checkpoint_is_transparent():
    problem = make_problem((2, 8, 8), seed=100)
    ref_pats, ref_lc = reference(problem, ("small", 100))
    buf, lc, complete = _driver(problem, None, resume=False)
    assert complete
    assert sorted(p.tobytes() for p in buf.arrays()[0]) == ref_pats
    np.testing.assert_array_equal(lc, ref_lc)


def test_recorder_kept_rows_match_its_buffer():
    """One conversion: the rows a Recorder keeps for the journal are the rows it buffered."""
    problem = make_problem((2, 8, 8), seed=100)
    shape = C.Shape.of(problem)
    buf = RegionBuffer(problem.pattern_bytes, problem.domain.d, problem.L)
    rec = C.Recorder(problem.domain, shape.row_dtype, buf)
    out, _ = enumerate_serial(problem)
    for reg in out[: len(out) // 2]:
        rec(*reg)
    rest = out[len(out) // 2:]
    rec.batch(np.array([np.frombuffer(b, np.uint8) for b, _, _, _ in rest]), np.array([y for _, y, _, _ in rest]),
              np.array([r for _, _, r, _ in rest]), np.array([rk for _, _, _, rk in rest]))
    rows = rec.take()
    assert len(rows) == len(out) == buf.count
    assert rows.dtype == buf.dtype()
    a = buf.arrays()
    np.testing.assert_array_equal(rows["pattern"], a[0])
    np.testing.assert_array_equal(rows["point"], a[1])
    np.testing.assert_array_equal(rows["radius"], a[2])
    np.testing.assert_array_equal(rows["rank"], a[3])
    assert len(rec.take()) == 0

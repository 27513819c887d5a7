"""The checkpoint replay's column-wise form (issue 15: resuming a 10^8-region run's checkpoint
without holding a Python object per record): item keys, key ids under hash collisions, the
replay of a many-record checkpoint against an independent reading of its journals, and its
memory per record."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from mpi_enum.engine.work import WorkItem
from mpi_enum.io import checkpoint as C
from mpi_enum.io.checkpoint import resume as R
from mpi_enum.io.checkpoint.layout import item_key, item_keys, record_key
from mpi_enum.model.domain import box_domain
from mpi_enum.model.network import Network
from mpi_enum.model.problem import Problem


def _problem(widths=(2, 16, 16)):
    rng = np.random.default_rng(0)
    dims = list(widths) + [1]
    net = Network([rng.normal(size=(dims[i + 1], dims[i])) for i in range(len(dims) - 1)],
                  [rng.normal(size=dims[i + 1]) for i in range(len(dims) - 1)], sha256="replay", source="t.npz")
    return Problem(net, box_domain(-np.ones(widths[0]), np.ones(widths[0])), 1e-9)


def _item(bits, rng):
    return WorkItem(len(bits), bytes(bits), rng.normal(size=2), float(rng.random()))


def test_item_keys_equal_record_keys_and_sort_alike():
    rng = np.random.default_rng(1)
    k, N = 2, 32
    nf = WorkItem.record_size(k, N)
    items = [_item(rng.integers(0, 2, int(rng.integers(0, N + 1))).tolist(), rng) for _ in range(400)]
    items += items[:50]  # duplicates
    rows = np.stack([it.encode(k, nf) for it in items])
    rows[:, 1] = rng.normal(size=len(rows))  # r and yc are not part of the key
    keys = item_keys(rows, k)
    ref = [record_key(r, k) for r in rows]
    for i in range(0, len(rows), 7):
        for j in range(0, len(rows), 5):
            assert (keys[i] == keys[j]) == (ref[i] == ref[j])
    assert [ref[i] for i in np.argsort(keys, kind="stable")] == sorted(ref)


@pytest.mark.parametrize("hash_kind", ["real", "all-collide", "mod-3"])
def test_key_ids_group_exactly_even_when_hashes_collide(monkeypatch, hash_kind):
    rng = np.random.default_rng(2)
    keys = rng.integers(0, 3, (5000, 11), dtype=np.uint8).view(np.dtype((np.void, 11))).ravel()
    real = R._hash64
    if hash_kind == "all-collide":
        monkeypatch.setattr(R, "_hash64", lambda ks: np.zeros(len(ks), np.uint64))
    elif hash_kind == "mod-3":
        monkeypatch.setattr(R, "_hash64", lambda ks: real(ks) % np.uint64(3))
    ids, rep = R.key_ids(keys)
    _, inv = np.unique(keys, return_inverse=True)
    inv = inv.ravel()
    assert len(rep) == len(np.unique(keys))
    assert np.array_equal(keys[rep[ids]], keys)  # every key's group representative is that key
    # one to one between our groups and np.unique's
    pairs = np.unique(np.stack([ids, inv]), axis=1)
    assert pairs.shape[1] == len(rep)


def _binary_checkpoint(tmp_path, n_records, ranks=3):
    """A checkpoint whose records each finish one item and create its two children (breadth
    first), spread over ``ranks`` journals.  Returns (ckdir, problem, open item keys)."""
    problem = _problem()
    shape = C.Shape.of(problem)
    ckdir = str(tmp_path / "ck")
    rng = np.random.default_rng(3)
    root = _item([], rng)
    C.start_generation(ckdir, 0, C.make_meta(problem), [root], shape)
    js = [C.Journal(ckdir, 0, r, shape) for r in range(ranks)]
    frontier = [root]
    lc = np.array([1, 2])
    for i in range(n_records):
        it = frontier[i]
        kids = [_item(list(it.bits) + [b], rng) for b in (0, 1)]
        frontier += kids
        js[i % ranks].item_done(it, kids, None, layer_counts_delta=lc)
    for j in js:
        j.close()
    return ckdir, problem, sorted(item_key(it) for it in frontier[n_records:])


def test_replay_of_many_records_matches_the_journals(tmp_path):
    ckdir, problem, open_keys = _binary_checkpoint(tmp_path, 3000)
    res = C.load_checkpoint(ckdir, C.make_meta(problem))
    assert res.n_records == 3000 and res.n_ignored_records == 0
    assert [item_key(it) for it in res.open_items] == open_keys  # the leaves, in key order
    assert res.layer_counts.tolist() == [3000, 6000]


def test_replay_memory_per_record_is_small(tmp_path):
    """The old replay (a Python record, dict entries and bytes keys per record) held ~1.7 KB a
    record; the column-wise one stays under 600 bytes at its peak."""
    n = 5000
    ckdir, problem, open_keys = _binary_checkpoint(tmp_path, n, ranks=2)
    meta = C.make_meta(problem)
    tracemalloc.start()
    try:
        res = C.load_checkpoint(ckdir, meta)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.n_records == n and len(res.open_items) == len(open_keys)
    assert peak / n < 600, f"{peak / n:.0f} bytes a record at the peak"

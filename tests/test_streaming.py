"""Post-processing in bounded memory (issue 15): ``verify`` and ``analyze`` stream the rows of a
result (``Result.chunks``, first-layer buckets on scratch files) instead of loading the file.

Tiny chunk and bucket sizes (module constants) force the streaming paths on small files: the
answers must be those of one in-memory pass, and the memory traced must stay far below the
size of the rows."""
import tracemalloc

import numpy as np
import pytest

from _postproc_util import corrupt_copy, random_net, write_serial_result  # noqa: E402

from mpi_enum.io import reader
from mpi_enum.post import analyze, buckets, verify


@pytest.fixture(scope="module")
def d3(tmp_path_factory):
    t = tmp_path_factory.mktemp("stream")
    net = random_net(t / "net.npz", [3, 9, 8, 2], seed=3)
    out = write_serial_result(net, t / "res.h5")
    return t, net, out


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(reader, "CHUNK_ROWS", 37)
    monkeypatch.setattr(buckets, "BUCKET_ROWS", 50)


def _status(checks):
    return {c.name: (c.status, c.detail) for c in checks}


def test_buckets_partition_by_first_layer(d3, tiny):
    t, net, out = d3
    res = reader.load_result(out, regions=False)
    assert res.packed is None and res.n > 400
    full = reader.load_result(out)
    seen, B = [], None
    w0 = res.widths[0]
    for b, B, bk in buckets.buckets(res, ("pattern", "affine_rank")):
        seen.append(bk["row"])
        assert np.array_equal(bk["pattern"], full.packed[bk["row"]])
        assert np.array_equal(bk["affine_rank"], full.ranks[bk["row"]])
        assert np.all(np.diff(bk["row"]) > 0)  # file order within a bucket
    assert B == buckets.n_buckets(res.n) > 2
    rows = np.concatenate(seen)
    assert np.array_equal(np.sort(rows), np.arange(res.n))
    # a first-layer pattern lives in one bucket only
    first = {}
    for i, (b, _, bk) in enumerate(buckets.buckets(res, ("pattern",))):
        for row in np.unpackbits(bk["pattern"], axis=1, count=res.N)[:, :w0]:
            assert first.setdefault(row.tobytes(), b) == b
    g1, n1 = buckets.packed_prefix_groups(full.packed, 5)
    from mpi_enum.post.geometry import prefix_groups

    g2, n2 = prefix_groups(full.bits(), 5)
    assert n1 == n2 and np.array_equal(g1, g2)


def test_analyze_streamed_equals_in_memory(d3, monkeypatch):
    t, net, out = d3
    ref = analyze.analyze_result(reader.load_result(out))
    monkeypatch.setattr(reader, "CHUNK_ROWS", 37)
    monkeypatch.setattr(buckets, "BUCKET_ROWS", 50)
    got = analyze.analyze_result(reader.load_result(out, regions=False))
    assert got == ref
    assert [r["n_regions"] for r in got["layers"]] == [r["n_regions_recorded"] for r in got["layers"]]


def test_verify_streamed_equals_in_memory(d3, monkeypatch):
    t, net, out = d3
    ref = _status(verify.verify_result(out, net, samples=3000))
    assert all(s == "PASS" for s, _ in ref.values()), ref
    monkeypatch.setattr(reader, "CHUNK_ROWS", 37)
    monkeypatch.setattr(buckets, "BUCKET_ROWS", 50)
    monkeypatch.setattr(verify, "CHUNK", 29)
    assert _status(verify.verify_result(out, net, samples=3000)) == ref


def test_streamed_verify_finds_a_duplicate_and_a_missing_region(d3, tiny):
    t, net, out = d3
    dup = corrupt_copy(out, t / "dup.h5", duplicate=3)
    st = _status(verify.verify_result(dup, net, samples=2000))
    assert st["patterns unique"][0] == "FAIL" and "rows [3]" in st["patterns unique"][1]
    import h5py

    with h5py.File(out, "r") as f:
        big = int(np.argmax(f["regions/radius"][()]))
    gone = corrupt_copy(out, t / "gone.h5", drop=big)
    st = _status(verify.verify_result(gone, net, samples=20000))
    assert st["sampled coverage"][0] == "FAIL"
    assert st["layer counts"][0] in ("PASS", "FAIL")


def test_volume_check_skipped_above_its_cap(d3, monkeypatch):
    t, net, out = d3
    monkeypatch.setattr(verify, "VOLUME_MAX_REGIONS", 10)
    st = _status(verify.verify_result(out, net, samples=500))
    assert st["volumes sum to domain"][0] == "SKIP"


def test_memory_stays_below_the_rows(tmp_path, monkeypatch):
    """Small chunks and buckets: analyze and verify trace a fraction of the memory that one pass
    over the whole file in memory (the default sizes on a small file) needs."""
    net = random_net(tmp_path / "net.npz", [4, 16, 16, 2], seed=2)
    out = write_serial_result(net, tmp_path / "res.h5")
    assert reader.load_result(out, regions=False).n > 10000
    monkeypatch.setattr(verify, "VOLUME_MAX_REGIONS", 0)
    monkeypatch.setattr(verify, "VOLUME_MAX_REGIONS_QHULL", 0)
    monkeypatch.setattr(verify, "CHUNK", 40)  # verify's samples and volumes: already in chunks
    monkeypatch.setattr(verify, "GEOMETRY_FLOATS", 40 * 32 * 4)  # and its per-row geometry (40 rows)

    def peak(fn):
        fn()  # imports and caches first
        tracemalloc.start()
        fn()
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p

    runs = (lambda: analyze.analyze_result(reader.load_result(out, regions=False)),
            lambda: verify.verify_result(out, net, samples=200))
    whole = [peak(fn) for fn in runs]
    monkeypatch.setattr(buckets, "BUCKET_ROWS", 500)
    monkeypatch.setattr(reader, "CHUNK_ROWS", 500)
    streamed = [peak(fn) for fn in runs]
    for w, s in zip(whole, streamed):
        assert s < w / 2, (whole, streamed)

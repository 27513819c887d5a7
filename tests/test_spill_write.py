"""Every region row reaches the result file when the per-rank buffer has spilled.

A RegionBuffer batches its spilled rows and its rows in memory separately, so it can hold more
batches than ceil(rows / BATCH); the writer once made ceil(rows / BATCH) write calls and dropped
the rest (zero rows in the file: radius 0, duplicate patterns).  Here rows are known numbers, so
the file must hold exactly them, in order."""
import h5py
import numpy as np
import pytest

from mpi_enum.io.buffer import BATCH, RegionBuffer
from mpi_enum.io.results import write_result
from mpi_enum.model.domain import box_domain
from mpi_enum.model.network import Network


def _rows(n, d, L, pb):
    i = np.arange(n)
    pat = np.stack([(i >> (8 * b)) & 0xFF for b in range(pb)], axis=1).astype(np.uint8)
    pts = np.tile(i[:, None], (1, d)) + np.arange(d) / (d + 1.0)
    return pat, pts, i + 1.0, np.tile((i % 5)[:, None], (1, L)).astype(np.int16)


@pytest.mark.parametrize("n,spill_rows,size", [(5000, 1024, BATCH), (3000, 1024, 1000), (2500, 1024, 4096)])
def test_batches_cover_every_row(n, spill_rows, size):
    pat, pts, rad, rk = _rows(n, 3, 2, 2)
    buf = RegionBuffer(2, 3, 2, spill_bytes=spill_rows * (2 + 24 + 8 + 4))
    for s in range(0, n, 700):
        buf.extend(pat[s:s + 700], pts[s:s + 700], rad[s:s + 700], rk[s:s + 700])
    assert buf.spilled > 0 and buf.n > 0 and buf.count == n
    parts = list(buf.batches(size))
    assert len(parts) == buf.n_batches(size) >= -(-n // size)
    np.testing.assert_array_equal(np.concatenate([p[2] for p in parts]), rad)
    buf.close()


def test_spilled_buffer_is_written_whole(tmp_path):
    n, d = 3000, 3
    pat, pts, rad, rk = _rows(n, d, 2, 2)
    buf = RegionBuffer(2, d, 2, spill_bytes=1024 * (2 + 8 * d + 8 + 4))
    buf.extend(pat, pts, rad, rk)
    assert buf.spilled == 2048 and buf.n == n - 2048 and buf.n_batches() == 2  # ceil(3000 / BATCH) is 1
    net = Network([np.ones((8, d)), np.ones((4, 8)), np.ones((1, 4))], [np.zeros(8), np.zeros(4), np.zeros(1)])
    meta = {"net": net, "domain": box_domain(-np.ones(d), np.ones(d)), "tol": 1e-9, "wall_seconds": 0.0,
            "complete": True, "software": {}, "command_line": "tests"}
    out = tmp_path / "out.h5"
    write_result(str(out), None, meta, buf, {"regions": n}, [n, n])
    buf.close()
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["regions/radius"][()], rad)
        np.testing.assert_array_equal(f["regions/pattern"][()], pat)
        np.testing.assert_array_equal(f["regions/interior_point"][()], pts)
        np.testing.assert_array_equal(f["regions/affine_rank"][()], rk)


def test_spilled_batches_read_without_copies():
    """A spilled batch is read straight into its array (issue 15: the final write's memory): the
    memory traced while reading one batch stays near the batch's own size, not two or three
    copies of it (the bytearray and its bytes copy once read before every batch)."""
    import tracemalloc

    n, size = 40000, 20000
    pat, pts, rad, rk = _rows(n, 3, 2, 2)
    buf = RegionBuffer(2, 3, 2, spill_bytes=1024)
    buf.extend(pat, pts, rad, rk)
    assert buf.spilled >= size
    nbytes = size * buf.dtype().itemsize
    it = buf.batches(size)
    tracemalloc.start()
    first = next(it)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(first[2], rad[:size])
    assert peak < 1.3 * nbytes, (peak, nbytes)
    buf.close()

"""Work items and search statistics, shared by the engine, the driver and the checkpoint journal.

A :class:`WorkItem` is ``(depth, bits, yc, r)``: the decided bits of the first ``depth`` neurons
(0/1 bytes) plus a certified ball of the cell.  The engine can rebuild the cell from it (the
hyperplanes only depend on the bits), so items travel between ranks and into checkpoints.

May import: numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class WorkItem:
    depth: int
    bits: bytes  # one byte (0/1) per decided neuron, len == depth
    yc: np.ndarray
    r: float

    def encode(self, k: int, words: int | None = None) -> np.ndarray:
        """Float64 record [depth, r, yc(k), packed bits as float64 words], zero-padded to
        ``words`` (use ``record_size(k, N)`` for a fixed size across all items)."""
        packed = np.packbits(np.frombuffer(self.bits, dtype=np.uint8)) if self.depth else np.zeros(0, np.uint8)
        rec = np.concatenate([[float(self.depth), self.r], self.yc, _bytes_to_f64(packed)])
        if words is not None and rec.size < words:
            rec = np.concatenate([rec, np.zeros(words - rec.size)])
        return rec

    @staticmethod
    def record_size(k: int, n_neurons: int) -> int:
        return 2 + k + (((n_neurons + 7) // 8) + 7) // 8

    @staticmethod
    def decode(rec: np.ndarray, k: int) -> "WorkItem":
        depth = int(rec[0])
        r = float(rec[1])
        yc = np.array(rec[2 : 2 + k])
        packed = np.ascontiguousarray(rec[2 + k :]).view(np.uint8)
        bits = np.unpackbits(packed)[:depth].tobytes()
        return WorkItem(depth, bits, yc, r)


def _bytes_to_f64(packed: np.ndarray) -> np.ndarray:
    n = (packed.size + 7) // 8
    buf = np.zeros(n * 8, dtype=np.uint8)
    buf[: packed.size] = packed
    return buf.view(np.float64)


class Stats:
    def __init__(self, L):
        self.nodes = 0
        self.lps = 0
        self.regions = 0
        self.cert_both = 0
        self.screened = 0
        self.layer_counts = np.zeros(L, dtype=np.int64)

    def as_dict(self):
        return {"nodes": self.nodes, "lps": self.lps, "regions": self.regions,
                "cert_both": self.cert_both, "screened": self.screened,
                "layer_counts": self.layer_counts.tolist()}

"""Resume: replay all journals of all generations into the open items and committed rows
(:func:`load_checkpoint`, :class:`Resume`)."""
from __future__ import annotations

import os
from collections import defaultdict, deque
from dataclasses import dataclass, field

import numpy as np

from ...engine.work import WorkItem
from .journal import read_journal
from .layout import CheckpointError, Shape, _RANK_RE, _compare_meta, describe_key, generation_dir, list_generations, read_meta, read_roots, record_key

# ----------------------------------------------------------------------------- resume

@dataclass
class Resume:
    """What :func:`load_checkpoint` found (picklable: rank 0 broadcasts it)."""

    ckdir: str
    shape: Shape
    generation: int  # the number of the generation to start next
    fresh: bool  # no checkpoint at all: start from the root
    open_items: list  # WorkItems still to explore (empty when complete)
    complete: bool
    layer_counts: np.ndarray
    n_regions: int
    stats: dict
    segments: list  # [(regions path, [(row start, count), ...])]
    frozen: dict | None  # committed journal lengths of the last generation, for the next meta
    generations: list = field(default_factory=list)
    n_records: int = 0
    n_ignored_records: int = 0
    notes: list = field(default_factory=list)

    def iter_rows(self, rank=0, size=1, batch=1 << 16):
        """Committed region rows, as structured arrays of at most ``batch`` rows.

        Rank ``rank`` of ``size`` takes the regions files ``rank, rank + size, ...`` (in the order
        of ``segments``), so the ranks together read every committed row exactly once.
        """
        dt = self.shape.row_dtype
        for i, (path, ranges) in enumerate(self.segments):
            if i % size != rank:
                continue
            with open(path, "rb") as f:
                for start, count in ranges:
                    f.seek(start * dt.itemsize)
                    left = count
                    while left > 0:
                        m = min(batch, left)
                        buf = f.read(m * dt.itemsize)
                        if len(buf) != m * dt.itemsize:
                            raise CheckpointError(f"{path}: region rows vanished since the checkpoint was loaded")
                        yield np.frombuffer(buf, dtype=dt)
                        left -= m

    def feed(self, buf, rank=0, size=1) -> int:
        """Append this rank's share of the committed rows to a RegionBuffer; returns the count."""
        n = 0
        for rec in self.iter_rows(rank, size):
            buf.extend(rec["pattern"], rec["point"], rec["radius"], rec["rank"])
            n += len(rec)
        return n


def _merge_ranges(ranges):
    out = []
    for s, n in sorted(ranges):
        if n == 0:
            continue
        if out and out[-1][0] + out[-1][1] == s:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((s, n))
    return out


def _load_generation(ckdir, g, roots, shape, limits, verify):
    """Replay one generation from its roots.  Returns a dict of its outcome."""
    gdir = generation_dir(ckdir, g)
    k = shape.k
    names = sorted((int(m.group(1)), n) for n in os.listdir(gdir) if (m := _RANK_RE.match(n)))
    scans = []
    for fi, (r, name) in enumerate(names):
        limit = None
        if limits is not None:
            limit = limits.get(name, 0)
        scans.append(read_journal(os.path.join(gdir, name), os.path.join(gdir, f"rank{r}.regions"), shape,
                                  limit=limit, verify=verify, file_index=fi))
    records = [rec for s in scans for rec in s.records]
    claims = defaultdict(list)
    pending = []
    for rid, rec in enumerate(records):
        keys = {record_key(row, k) for row in rec.done}
        pending.append(len(keys))
        for key in keys:
            claims[key].append(rid)
    open_items = {}
    created = set()
    done_by = {}
    queue = deque()
    for row in roots:
        key = record_key(row, k)
        if key in created:
            raise CheckpointError(f"{gdir}/roots.npy: item ({describe_key(key, k)}) listed twice")
        created.add(key)
        open_items[key] = row
        queue.append(key)

    def where(rid):
        rec = records[rid]
        return f"{names[rec.file][1]} record {rec.index}"

    accepted = []
    while queue:
        key = queue.popleft()
        for rid in claims.get(key, ()):
            pending[rid] -= 1
            if pending[rid]:
                continue
            accepted.append(rid)
            rec = records[rid]
            for row in rec.done:
                dk = record_key(row, k)
                if dk in done_by:
                    raise CheckpointError(
                        f"{gdir}: item ({describe_key(dk, k)}) was finished twice ({where(done_by[dk])} and "
                        f"{where(rid)}): its regions would be counted twice; the checkpoint is inconsistent "
                        f"(a bug in the driver's claims)")
                done_by[dk] = rid
                open_items.pop(dk, None)
            for row in rec.children:
                ck_ = record_key(row, k)
                if ck_ in created:
                    raise CheckpointError(
                        f"{gdir}: item ({describe_key(ck_, k)}) was created twice (again by {where(rid)}): "
                        f"the checkpoint is inconsistent (a bug)")
                created.add(ck_)
                open_items[ck_] = row
                queue.append(ck_)
    lc = np.zeros(shape.L, np.int64)
    stats = defaultdict(float)
    per_file = defaultdict(list)
    n_regions = 0
    for rid in accepted:
        rec = records[rid]
        lc += rec.lc
        for key_, v in rec.stats.items():
            if isinstance(v, (int, float)):
                stats[key_] += v
        if rec.n_rows:
            per_file[rec.file].append((rec.row_off, rec.n_rows))
            n_regions += rec.n_rows
    segments = []
    for fi, (r, name) in enumerate(names):
        if per_file.get(fi):
            segments.append((os.path.join(gdir, f"rank{r}.regions"), _merge_ranges(per_file[fi])))
    notes = [n for s in scans for n in s.notes]
    ignored = len(records) - len(accepted)
    if ignored:
        notes.append(f"gen{g}: {ignored} committed record(s) not reachable from the roots (their creator's "
                     f"record was lost); ignored with their regions")
    return {"open": open_items, "lc": lc, "stats": dict(stats), "segments": segments, "n_regions": n_regions,
            "lengths": {names[fi][1]: s_.valid_bytes for fi, s_ in enumerate(scans)},
            "n_records": len(accepted), "n_ignored": ignored, "notes": notes}


def load_checkpoint(ckdir, expected_meta, verify="all") -> Resume:
    """Replay every generation of ``ckdir`` (rank 0).  Raises InputError / CheckpointError.

    ``expected_meta``: :func:`make_meta` of the run that resumes; network, domain, tol and the
    sizes must match.  An empty or missing directory gives a ``fresh`` Resume.
    """
    shape = Shape(int(expected_meta["N"]), int(expected_meta["k"]), int(expected_meta["L"]),
                  int(expected_meta["d"]))
    gens = list_generations(ckdir)
    next_gen = (gens[-1][0] + 1) if gens else 0
    valid = [g for g, ok in gens if ok]
    empty = Resume(ckdir, shape, next_gen, True, [], False, np.zeros(shape.L, np.int64), 0, {}, [], None)
    if not valid:
        return empty
    metas = {g: read_meta(ckdir, g) for g in valid}
    for g in valid:
        _compare_meta(ckdir, g, metas[g], expected_meta)
    k = shape.k
    open_items = None
    lc = np.zeros(shape.L, np.int64)
    stats = defaultdict(float)
    segments, notes = [], []
    n_regions = n_records = n_ignored = 0
    lengths = None
    for idx, g in enumerate(valid):
        roots = read_roots(ckdir, g, shape)
        if open_items is None:
            if len(roots) != 1 or int(roots[0][0]) != 0:
                raise CheckpointError(f"{generation_dir(ckdir, g)}: the first generation must start from the root "
                                      f"item (was an earlier generation deleted?)")
        else:
            keys = {record_key(r, k) for r in roots}
            if keys != set(open_items) or len(keys) != len(roots):
                raise CheckpointError(f"{generation_dir(ckdir, g)}/roots.npy: does not match the open items of the "
                                      f"previous generation (files changed or deleted?)")
        limits = None
        if idx + 1 < len(valid):
            fz = metas[valid[idx + 1]].get("frozen")
            if not fz or int(fz.get("generation", -1)) != g:
                raise CheckpointError(f"{generation_dir(ckdir, valid[idx + 1])}/meta.json: missing the frozen "
                                      f"lengths of gen{g}")
            limits = {str(n): int(v) for n, v in fz["lengths"].items()}
        out = _load_generation(ckdir, g, roots, shape, limits, verify)
        open_items = out["open"]
        lc += out["lc"]
        for key_, v in out["stats"].items():
            stats[key_] += v
        segments += out["segments"]
        notes += out["notes"]
        n_regions += out["n_regions"]
        n_records += out["n_records"]
        n_ignored += out["n_ignored"]
        lengths = {"generation": g, "lengths": out["lengths"]}
    items = [WorkItem.decode(open_items[key], k) for key in sorted(open_items)]
    return Resume(ckdir, shape, next_gen, False, items, not items, lc, n_regions, dict(stats), segments, lengths,
                  generations=valid, n_records=n_records, n_ignored_records=n_ignored, notes=notes)

"""Resume: replay all journals of all generations into the open items and committed rows
(:func:`load_checkpoint`, :class:`Resume`)."""
from __future__ import annotations

import os
from array import array
from collections import defaultdict, deque
from dataclasses import dataclass, field

import numpy as np

from ...engine.work import WorkItem
from .journal import read_journal
from .layout import CheckpointError, Shape, _RANK_RE, _compare_meta, describe_key, generation_dir, list_generations, item_keys, read_meta, read_roots

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


_CHUNK = 1 << 16


def _hash64(keys) -> np.ndarray:
    """A 64-bit hash of each key (FNV-style fold of its 64-bit words, a chunk of keys at a time)."""
    n, w = len(keys), keys.dtype.itemsize
    words = -(-w // 8)
    h = np.empty(n, np.uint64)
    with np.errstate(over="ignore"):
        for a in range(0, n, _CHUNK):
            b8 = np.zeros((min(_CHUNK, n - a), 8 * words), np.uint8)
            b8[:, :w] = keys[a:a + _CHUNK].view(np.uint8).reshape(-1, w)
            x = np.full(len(b8), 0xCBF29CE484222325, np.uint64)
            for col in b8.view(np.uint64).T:
                x = (x ^ col) * np.uint64(0x100000001B3)
                x ^= x >> np.uint64(29)
            h[a:a + _CHUNK] = x
    return h


def key_ids(keys) -> tuple:
    """Group ids of equal keys (a void array): ``(ids, rep)`` with ``ids[i] == ids[j]`` iff
    ``keys[i] == keys[j]`` and ``keys[rep[g]]`` a key of group ``g``.  Sorts 64-bit hashes rather
    than the keys (about 40 bytes a key at the peak, against ~130 for ``np.unique``), then checks every pair of neighbours with
    equal hashes byte for byte; on a collision it falls back to ``np.unique`` (exact either way).
    Ids are not in key order."""
    n = len(keys)
    h = _hash64(keys)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    del h
    new = np.empty(n, bool)
    new[:1] = True
    np.not_equal(hs[1:], hs[:-1], out=new[1:])
    del hs
    same = np.flatnonzero(~new)
    for a in range(0, len(same), _CHUNK):
        i = same[a:a + _CHUNK]
        if np.any(keys[order[i]] != keys[order[i - 1]]):  # a hash collision: do it the slow way
            _, ids = np.unique(keys, return_inverse=True)
            ids = ids.ravel().astype(np.int64)
            rep = np.zeros(int(ids.max()) + 1 if n else 0, np.int64)
            rep[ids] = np.arange(n)
            return ids, rep
    gid = np.cumsum(new, dtype=np.int64) - 1
    ids = np.empty(n, np.int64)
    ids[order] = gid
    return ids, order[np.flatnonzero(new)]


def _cat(parts):
    """The int64 arrays ``parts`` end to end (none: an empty array)."""
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _item_rows(roots, recs, which) -> np.ndarray:
    """Encoded rows of items: ``which`` < 0 is root ``which + len(roots)``, else child ``which``
    in record order across ``recs`` (read again from their journals)."""
    out = np.zeros((len(which), roots.shape[1]))
    is_root = which < 0
    out[is_root] = roots[which[is_root] + len(roots)]
    first = 0
    for r_ in recs:
        n = len(r_.child_pos)
        mine = np.flatnonzero((which >= first) & (which < first + n))
        if len(mine):
            out[mine] = r_.child_rows(which[mine] - first)
        first += n
    return out


def _load_generation(ckdir, g, roots, shape, limits, verify):
    """Replay one generation from its roots.  Returns a dict of its outcome.

    Column-wise throughout: every item key (roots, finished items and children of all records)
    gets an integer id (:func:`key_ids`); the replay is a breadth-first pass over ids with
    flat arrays (no Python object per record or key)."""
    gdir = generation_dir(ckdir, g)
    k, nf = shape.k, shape.item_floats
    names = sorted((int(m.group(1)), n) for n in os.listdir(gdir) if (m := _RANK_RE.match(n)))
    scans = []
    for r, name in names:
        limit = None if limits is None else limits.get(name, 0)
        scans.append(read_journal(os.path.join(gdir, name), os.path.join(gdir, f"rank{r}.regions"), shape,
                                  limit=limit, verify=verify))
    recs = [s_.records for s_ in scans]
    n_rec = np.array([r_.n for r_ in recs], np.int64)
    R = int(n_rec.sum())
    rec_file = np.repeat(np.arange(len(recs)), n_rec)
    rec_index = _cat([r_.index for r_ in recs])

    def ptr(which):
        lens = _cat([np.diff(getattr(r_, which)) for r_ in recs])
        return np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)

    done_ptr, child_ptr = ptr("done_ptr"), ptr("child_ptr")
    roots = np.asarray(roots, np.float64).reshape(-1, nf)
    nr = len(roots)
    n_child = int(child_ptr[-1])
    keys = np.concatenate([item_keys(roots, k)] + [r_.child_keys for r_ in recs] + [r_.done_keys for r_ in recs])
    for r_ in recs:
        r_.child_keys = r_.done_keys = None  # (now in keys)
    ids, rep = key_ids(keys)
    M = len(rep)

    def name_of(i):
        return describe_key(bytes(keys[rep[i]]), k)

    root_ids, child_ids, done_ids = ids[:nr], ids[nr:nr + n_child], ids[nr + n_child:]
    del ids
    twice = np.flatnonzero(np.bincount(root_ids, minlength=M) > 1)
    if len(twice):
        raise CheckpointError(f"{gdir}/roots.npy: item ({name_of(twice[0])}) listed twice")
    # each record waits for the distinct items it finished; claims[key] = the records finishing it
    rec_of_done = np.repeat(np.arange(R, dtype=np.int64), np.diff(done_ptr))
    pairs = np.unique(rec_of_done * M + done_ids)
    p_rec, p_key = pairs // M, pairs % M
    del pairs, rec_of_done
    pending = np.bincount(p_rec, minlength=R).astype(np.int64)
    order = np.lexsort((p_rec, p_key))
    claim_rec = p_rec[order]
    claim_ptr = np.concatenate([[0], np.cumsum(np.bincount(p_key, minlength=M))]).astype(np.int64)
    del order, p_rec, p_key

    def where(rid):
        return f"{names[int(rec_file[rid])][1]} record {int(rec_index[rid])}"

    created = np.zeros(M, bool)
    is_open = np.zeros(M, bool)
    src = np.full(M, -1, np.int64)  # the key's creator: root i (i < nr), else child nr + i
    done_by = np.full(M, -1, np.int64)
    created[root_ids] = is_open[root_ids] = True
    src[root_ids] = np.arange(nr)
    queue = deque(root_ids.tolist())
    accepted = array("q")
    while queue:
        key = queue.popleft()
        for rid in claim_rec[claim_ptr[key]:claim_ptr[key + 1]].tolist():
            pending[rid] -= 1
            if pending[rid]:
                continue
            accepted.append(rid)
            for dk in done_ids[done_ptr[rid]:done_ptr[rid + 1]].tolist():
                if done_by[dk] >= 0:
                    raise CheckpointError(
                        f"{gdir}: item ({name_of(dk)}) was finished twice "
                        f"({where(done_by[dk])} and {where(rid)}): its regions would be counted twice; the "
                        f"checkpoint is inconsistent (a bug in the driver's claims)")
                done_by[dk] = rid
                is_open[dk] = False
            c0 = int(child_ptr[rid])
            for j, ck in enumerate(child_ids[c0:child_ptr[rid + 1]].tolist()):
                if created[ck]:
                    raise CheckpointError(
                        f"{gdir}: item ({name_of(ck)}) was created twice (again by "
                        f"{where(rid)}): the checkpoint is inconsistent (a bug)")
                created[ck] = is_open[ck] = True
                src[ck] = nr + c0 + j
                queue.append(ck)
    acc = np.array(accepted, np.int64)
    open_ids = np.flatnonzero(is_open)
    open_keys = keys[rep[open_ids]]
    by_key = np.argsort(open_keys, kind="stable")
    open_keys, open_ids = open_keys[by_key], open_ids[by_key]
    stats = defaultdict(float)
    first = np.concatenate([[0], np.cumsum(n_rec)])
    lc = np.zeros(shape.L, np.int64)
    per_file = defaultdict(list)
    for fi, r_ in enumerate(recs):
        mine = acc[(acc >= first[fi]) & (acc < first[fi + 1])] - first[fi]
        lc += r_.lc[mine].sum(axis=0, dtype=np.int64) if len(mine) else 0
        for j in mine.tolist():
            for key_, v in r_.stats(j).items():
                if isinstance(v, (int, float)):
                    stats[key_] += v
            if r_.n_rows[j]:
                per_file[fi].append((int(r_.row_off[j]), int(r_.n_rows[j])))
    n_regions = sum(n for ranges in per_file.values() for _, n in ranges)
    segments = []
    for fi, (r, name) in enumerate(names):
        if per_file.get(fi):
            segments.append((os.path.join(gdir, f"rank{r}.regions"), _merge_ranges(per_file[fi])))
    notes = [n for s_ in scans for n in s_.notes]
    ignored = R - len(acc)
    if ignored:
        notes.append(f"gen{g}: {ignored} committed record(s) not reachable from the roots (their creator's "
                     f"record was lost); ignored with their regions")
    return {"open_keys": open_keys, "open_rows": _item_rows(roots, recs, src[open_ids] - nr), "lc": lc,
            "stats": dict(stats),
            "segments": segments, "n_regions": n_regions,
            "lengths": {names[fi][1]: s_.valid_bytes for fi, s_ in enumerate(scans)},
            "n_records": len(acc), "n_ignored": ignored, "notes": notes}


def load_checkpoint(ckdir, expected_meta, verify="all") -> Resume:
    """Replay every generation of ``ckdir`` (rank 0).  Raises InputError / CheckpointError.

    ``expected_meta``: :func:`make_meta` of the run that resumes; network, domain, tol and the
    sizes must match.  An empty or missing directory gives a ``fresh`` Resume.
    """
    shape = Shape(int(expected_meta["N"]), int(expected_meta["k"]), int(expected_meta["L"]),
                  int(expected_meta["d"]), expected_meta.get("P"))
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
    open_keys = open_rows = None
    lc = np.zeros(shape.L, np.int64)
    stats = defaultdict(float)
    segments, notes = [], []
    n_regions = n_records = n_ignored = 0
    lengths = None
    for idx, g in enumerate(valid):
        roots = read_roots(ckdir, g, shape)
        if open_keys is None:
            if len(roots) != 1 or int(roots[0][0]) != 0:
                raise CheckpointError(f"{generation_dir(ckdir, g)}: the first generation must start from the root "
                                      f"item (was an earlier generation deleted?)")
        else:
            keys = np.unique(item_keys(roots, k))
            if len(keys) != len(roots) or not np.array_equal(keys, open_keys):
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
        open_keys, open_rows = out["open_keys"], out["open_rows"]
        lc += out["lc"]
        for key_, v in out["stats"].items():
            stats[key_] += v
        segments += out["segments"]
        notes += out["notes"]
        n_regions += out["n_regions"]
        n_records += out["n_records"]
        n_ignored += out["n_ignored"]
        lengths = {"generation": g, "lengths": out["lengths"]}
    items = [WorkItem.decode(row, k) for row in open_rows]  # in key order
    return Resume(ckdir, shape, next_gen, False, items, not items, lc, n_regions, dict(stats), segments, lengths,
                  generations=valid, n_records=n_records, n_ignored_records=n_ignored, notes=notes)

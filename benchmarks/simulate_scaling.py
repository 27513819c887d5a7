#!/usr/bin/env python3
"""Scaling model of the work-stealing driver beyond this machine (issue #3, item 8).

1. Record: run the real engine serially on a benchmark network as the driver does, item by item
   with a node budget B (``Engine.explore(item, budget=B)``), timing every call: the task tree
   (task -> cost in seconds, regions, children = the returned frontier).
2. Synthesise a tree of ~1e8 regions: C copies of recorded top-level subtrees (the items of the
   recorded run's top partition, or ``--sample-roots`` of them drawn at random for a big network),
   each copy picked at random and its costs scaled by a lognormal factor (sigma 0.3) --
   resampling the recorded cost distribution -- under a binary top (one node each, the measured
   cost of a node), as the engine's top splits one hyperplane at a time.  Copies are expanded
   lazily, so the tree is never materialised.
3. Discrete-event simulation of the driver's policy at P = 1 ... 16,384: the static partition
   in two stages (breadth-first to >= P items on every rank, dealt round-robin; then each rank its
   own share to >= 16 items; ``two_stage`` False: the earlier replicated expansion to >= 16 P),
   then per rank: LIFO private stack, public queue refilled to ``low`` = 4 with the shallowest
   items after every task, idle ranks steal up to half (<= 8) of a random victim's oldest items;
   a steal costs ``steal_latency`` (RMA round trips + waiting for the victim's next poll),
   an empty victim costs ``probe_latency``; failed rounds back off exponentially (20 us .. 2 ms);
   termination detection costs one more probe after the last task.
   Efficiency = total work / (P * makespan).  With the final write: the result's bytes at the
   per-rank bandwidth measured in the 10^8 run, capped by an assumed file-system bandwidth
   (``--fs-gb-per-s``), added to the makespan (and once to the serial baseline); with
   checkpoints as well, the journal's copy of every row must also pass through the file system
   during the search (the makespan is then at least the result's bytes over that bandwidth).

    .venv/bin/python benchmarks/simulate_scaling.py [--net NET.npz] [--budget 256] [--regions 1e8]
        [--sample-roots 100 --split-top 4096] [--from-run benchmarks/results/big_run-....json]

Writes benchmarks/results/scaling.json.
"""
import argparse
import heapq
import json
import os
import pickle
import random
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def record(net_path, budget, split=64, sample_roots=None, seed=0):
    from mpi_enum.loaders.domain_options import make_domain
    from mpi_enum.engine.search import Engine
    from mpi_enum.model.problem import Problem
    from mpi_enum.loaders import load_network
    from mpi_enum.parallel.driver import top_partition

    net = load_network(net_path)
    prob = Problem(net, make_domain(net), 1e-9)
    eng = Engine(prob)
    items, top_regions = top_partition(eng, 1, split)
    n_top_items = len(items)
    if sample_roots and sample_roots < len(items):  # a big network: a random sample of its subtrees
        pick = np.random.default_rng(seed).choice(len(items), size=sample_roots, replace=False)
        items = [items[i] for i in sorted(pick)]
    cost, regs, kids = [], [], []
    roots = []

    def run(item):
        # iterative: returns the task id of item
        tid = len(cost)
        cost.append(0.0); regs.append(0); kids.append(())
        stack = [(item, tid)]
        while stack:
            it, t = stack.pop()
            n = [0]
            t0 = time.perf_counter()
            front = eng.explore(it, lambda *a: n.__setitem__(0, n[0] + 1), budget=budget)
            cost[t] = time.perf_counter() - t0
            regs[t] = n[0]
            ids = []
            for f in front:
                c = len(cost)
                cost.append(0.0); regs.append(0); kids.append(())
                ids.append(c)
                stack.append((f, c))
            kids[t] = tuple(ids)  # shallowest first
        return tid

    t0 = time.perf_counter()
    for it in items:
        roots.append(run(it))
    wall = time.perf_counter() - t0
    return {"cost": np.array(cost), "regions": np.array(regs), "kids": kids, "roots": roots,
            "top_regions": len(top_regions), "wall": wall, "nodes": eng.stats.nodes, "top_items": n_top_items}


class Tree:
    """Synthetic tree: task = (copy, recorded id); copy 0..C-1 scales costs by f[copy].

    Its top is a binary tree over the copies, as the engine's is over the first-layer
    hyperplanes: task ``(-1, lo, hi)`` (one node, ``node_cost``) splits the copies lo..hi-1 in
    halves; a single copy is that copy's recorded root.  So expanding the top breadth-first to
    T items costs about T nodes, as in the driver."""

    def __init__(self, rec, n_copies, node_cost, seed=0):
        rng = np.random.default_rng(seed)
        self.rec = rec
        self.cost = rec["cost"]
        self.kids = rec["kids"]
        self.node_cost = node_cost
        self.copies = [(int(rng.choice(rec["roots"])), float(rng.lognormal(0.0, 0.3))) for _ in range(n_copies)]
        sub = subtree_sums(rec)
        self.total_work = sum(sub[r] * f for r, f in self.copies)

    def root(self):
        return (-1, 0, len(self.copies))

    def task_cost(self, t):
        if t[0] == -2:  # the rest of a task whose top node the static partition expanded
            return t[1]
        if t[0] < 0:
            return self.node_cost
        return self.cost[t[1]] * self.copies[t[0]][1]

    def children(self, t):
        if t[0] == -2:
            return []
        if t[0] < 0:
            lo, hi = t[1], t[2]
            if hi - lo == 1:
                return [(lo, self.copies[lo][0])]
            mid = (lo + hi) // 2
            return [(-1, lo, mid), (-1, mid, hi)]
        return [(t[0], k) for k in self.kids[t[1]]]


def subtree_sums(rec):
    cost, kids = rec["cost"], rec["kids"]
    s = cost.copy()
    for t in range(len(cost) - 1, -1, -1):  # children have larger ids than parents
        for k in kids[t]:
            s[t] += s[k]
    return s


def _bfs(tree, q, target, cost=0.0):
    """Expand breadth-first until >= target items, as the driver does: one node a step (budget 1),
    so a step costs ``node_cost`` and a recorded task that it opens leaves the rest of its work as
    a childless task beside its children (no work lost).  Returns (items, seconds, work done)."""
    q = deque(q)
    rest = []  # the rests of opened tasks: items, but not split further
    t = work = 0.0
    while q and len(q) + len(rest) < target:
        it = q.popleft()
        if it[0] == -2:
            rest.append(it)
            continue
        c = tree.task_cost(it)
        step = min(c, tree.node_cost)
        t += step
        work += step
        q.extend(tree.children(it))
        if c > step:
            rest.append((-2, c - step))
    return list(q) + rest, t, work


def simulate(tree, P, steal_latency, probe_latency, node_cost, low=4, max_steal=8, split=16, seed=0,
             backoff=(2e-5, 2e-3), two_stage=True):
    """One discrete-event run of the driver at P ranks.  ``two_stage``: the driver's static
    partition (stage 1 replicated to >= P items, stage 2 each rank its share to >= split items);
    otherwise the earlier one (>= split * P items, replicated on every rank)."""
    rng = random.Random(seed)
    items, t1, w1 = _bfs(tree, [tree.root()], P if (two_stage and P > 1) else split * P)
    shares = [[] for _ in range(P)]
    for i, it in enumerate(items):
        shares[i % P].append(it)
    start = [t1] * P
    w_static = w1
    if two_stage and P > 1:
        for r in range(P):
            shares[r], t2, w2 = _bfs(tree, shares[r], split)
            start[r] = t1 + t2
            w_static += w2
    t_static = max(start)
    items = [it for sh in shares for it in sh]
    local = [[] for _ in range(P)]
    pub = [deque(sh) for sh in shares]
    outstanding = len(items)
    work = 0.0
    busy_t = [0.0] * P
    ev = [(start[r], r, 0) for r in range(P)]  # (time, rank, backoff level)
    heapq.heapify(ev)
    end = t_static
    steals = 0
    while ev:
        t, r, lvl = heapq.heappop(ev)
        lo = local[r]
        it = None
        if lo:
            it = lo.pop()
        elif pub[r]:
            it = pub[r].pop()
        if it is not None:
            c = tree.task_cost(it)
            work += c
            busy_t[r] += c
            ch = tree.children(it)
            outstanding += len(ch) - 1
            lo.extend(ch)
            m = min(len(lo), low - len(pub[r]))
            if m > 0:
                pub[r].extend(lo[:m])
                del lo[:m]
            heapq.heappush(ev, (t + c, r, 0))
            end = max(end, t + c)
            continue
        if outstanding == 0:
            end = max(end, t + probe_latency)
            continue  # this rank terminates
        # one round of up to 4 steal attempts
        dt = 0.0
        got = False
        for _ in range(min(4, P - 1)):
            v = rng.randrange(P - 1)
            v += v >= r
            if pub[v]:
                n = len(pub[v])
                m = min(max_steal, (n + 1) // 2)
                for _ in range(m):
                    lo.append(pub[v].popleft())
                lo.reverse()  # shallowest at the bottom of the stack
                dt += steal_latency
                steals += 1
                got = True
                break
            dt += probe_latency
        if got:
            heapq.heappush(ev, (t + dt, r, 0))
        elif P > 1:
            d = min(backoff[0] * 2 ** lvl, backoff[1])
            heapq.heappush(ev, (t + dt + d * (0.5 + rng.random()), r, lvl + 1))
    work += w_static  # the serial baseline pays the expansion once
    return {"P": P, "makespan": end, "work": work, "efficiency": work / (P * end) if end > 0 else 1.0,
            "static_seconds": t_static, "static_replicated_seconds": t1, "steals": steals,
            "busy_max_over_mean": max(busy_t) / (sum(busy_t) / P), "two_stage": bool(two_stage)}


def write_seconds(n_bytes, P, bw_rank, bw_fs):
    """The final collective write: every rank writes its rows at ``bw_rank`` (measured here),
    together at most ``bw_fs`` (the file system's aggregate bandwidth, an assumption)."""
    return n_bytes / min(P * bw_rank, bw_fs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default=str(REPO.parent / "shared" / "bench" / "nets" / "bench_d4_12x3.npz"))
    ap.add_argument("--budget", type=int, default=256)
    ap.add_argument("--regions", type=float, default=1e8)
    ap.add_argument("--ranks", default="1,4,16,64,256,1024,4096,16384")
    ap.add_argument("--split-top", type=int, default=64, help="items of the recorded top partition")
    ap.add_argument("--sample-roots", type=int, default=None, help="record only this many random top items")
    ap.add_argument("--steal-latency", type=float, default=100e-6)
    ap.add_argument("--probe-latency", type=float, default=20e-6)
    ap.add_argument("--bytes-per-region", type=float, default=64.0, help="result row size (the 10^8 run's)")
    ap.add_argument("--write-mb-per-s-per-rank", type=float, default=75.0, help="measured in the 10^8 run")
    ap.add_argument("--fs-gb-per-s", type=float, default=10.0, help="aggregate file-system bandwidth (assumed)")
    ap.add_argument("--from-run", default=None, help="a big_run JSON record: its write bandwidth and row size")
    ap.add_argument("--seconds-per-region", type=float, default=None,
                    help="scale the recorded costs to this (the big run's busy core-seconds per region): the "
                         "recording runs item by item in Python, slower per region than the driver")
    ap.add_argument("--save-record", default=None, help="keep the recorded task tree (pickle) for --load-record")
    ap.add_argument("--load-record", default=None)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scaling.json"))
    a = ap.parse_args()
    if a.from_run:  # the final write measured in the 10^8 run
        with open(a.from_run) as fh:
            run = json.load(fh)
        rows = run["write_seconds"].get("write: region rows", [0.0])
        a.bytes_per_region = float(run["bytes_per_region"])
        a.write_mb_per_s_per_rank = run["result_bytes"] / max(rows) / run["ranks"] / 1e6
    if a.load_record:
        with open(a.load_record, "rb") as fh:
            rec = pickle.load(fh)
    else:
        rec = record(a.net, a.budget, split=a.split_top, sample_roots=a.sample_roots)
    if a.save_record:
        with open(a.save_record, "wb") as fh:
            pickle.dump(rec, fh)
    n_reg = int(rec["regions"].sum()) + rec["top_regions"]
    per_root_regions = n_reg / len(rec["roots"])
    n_copies = max(1, int(round(a.regions / per_root_regions)))
    node_cost = rec["wall"] / rec["nodes"]
    scale = 1.0
    if a.seconds_per_region:
        scale = a.seconds_per_region / (rec["wall"] / max(n_reg, 1))
        rec["cost"] = rec["cost"] * scale
        node_cost *= scale
    tree = Tree(rec, n_copies, node_cost)
    c = rec["cost"]
    n_bytes = a.regions * a.bytes_per_region
    info = {"network": os.path.basename(a.net), "budget_nodes": a.budget, "recorded_tasks": int(len(c)),
            "recorded_top_items": rec["top_items"], "recorded_roots": len(rec["roots"]),
            "recorded_regions": n_reg, "recorded_seconds": rec["wall"], "recorded_nodes": rec["nodes"],
            "node_cost_s": node_cost, "recorded_seconds_per_region": rec["wall"] / max(n_reg, 1),
            "cost_scale": scale, "seconds_per_region": rec["wall"] * scale / max(n_reg, 1),
            "task_cost_mean_s": float(c.mean()), "task_cost_p99_s": float(np.quantile(c, 0.99)),
            "task_cost_max_s": float(c.max()), "synthetic_copies": n_copies,
            "synthetic_regions": n_copies * per_root_regions, "synthetic_work_s": tree.total_work,
            "steal_latency_s": a.steal_latency, "probe_latency_s": a.probe_latency,
            "result_bytes": n_bytes, "write_mb_per_s_per_rank": a.write_mb_per_s_per_rank,
            "fs_gb_per_s_assumed": a.fs_gb_per_s, "from_run": a.from_run}
    print(json.dumps(info, indent=1), flush=True)
    results = []
    for P in [int(x) for x in a.ranks.split(",")]:
        for two in (True, False):
            if P == 1 and not two:
                continue
            t0 = time.perf_counter()
            r = simulate(tree, P, a.steal_latency, a.probe_latency, node_cost, two_stage=two)
            r["sim_seconds"] = time.perf_counter() - t0
            w = write_seconds(n_bytes, P, a.write_mb_per_s_per_rank * 1e6, a.fs_gb_per_s * 1e9)
            w1 = write_seconds(n_bytes, 1, a.write_mb_per_s_per_rank * 1e6, a.fs_gb_per_s * 1e9)
            r["write_seconds"] = w
            r["efficiency_with_write"] = (r["work"] + w1) / (P * (r["makespan"] + w))
            # checkpoints journal every row once more, overlapped with the search: the file
            # system must absorb the result's bytes within the makespan, or it sets the pace
            ck_span = max(r["makespan"], write_seconds(n_bytes, P, a.write_mb_per_s_per_rank * 1e6,
                                                       a.fs_gb_per_s * 1e9))
            r["efficiency_with_checkpoints_and_write"] = (r["work"] + w1) / (P * (ck_span + w))
            results.append(r)
            print(f"P={P:5d} {'two-stage ' if two else 'replicated'} efficiency {r['efficiency']:.3f} "
                  f"(with the write {r['efficiency_with_write']:.3f}, and checkpoints "
                  f"{r['efficiency_with_checkpoints_and_write']:.3f}) makespan {r['makespan']:.2f} s "
                  f"static {r['static_seconds']:.4f} s (replicated {r['static_replicated_seconds']:.4f}) "
                  f"write {w:.2f} s steals {r['steals']} busy max/mean {r['busy_max_over_mean']:.3f}"
                  f" ({r['sim_seconds']:.0f} s to simulate)", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"model": info, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Scaling model of the work-stealing driver beyond this machine (issue #3, item 8).

1. Record: run the real engine serially on a benchmark network as the driver does, item by item
   with a node budget B (``Engine.explore(item, budget=B)``), timing every call: the task tree
   (task -> cost in seconds, regions, children = the returned frontier).
2. Synthesise a tree of ~1e8 regions: a root whose children are C copies of recorded top-level
   subtrees (the items of the static partition of the recorded run), each copy picked at random
   and its costs scaled by a lognormal factor (sigma 0.3) -- resampling the recorded cost
   distribution.  Copies are expanded lazily, so the tree is never materialised.
3. Discrete-event simulation of the driver's policy at P = 1 ... 4096: static partition
   (breadth-first until >= 16 P items, dealt round-robin; its cost is paid by every rank), then
   per rank: LIFO private stack, public queue refilled to ``low`` = 4 with the shallowest items
   after every task, idle ranks steal up to half (<= 8) of a random victim's oldest items;
   a steal costs ``steal_latency`` (RMA round trips + waiting for the victim's next poll),
   an empty victim costs ``probe_latency``; failed rounds back off exponentially (20 us .. 2 ms);
   termination detection costs one more probe after the last task.
   Efficiency = total work / (P * makespan).

    .venv/bin/python benchmarks/simulate_scaling.py [--net NET.npz] [--budget 256] [--regions 1e8]

Writes benchmarks/results/scaling.json.
"""
import argparse
import heapq
import json
import os
import random
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def record(net_path, budget, split=64):
    from mpi_enum.loaders.domain_options import make_domain
    from mpi_enum.engine.search import Engine
    from mpi_enum.model.problem import Problem
    from mpi_enum.loaders import load_network
    from mpi_enum.parallel.driver import top_partition

    net = load_network(net_path)
    prob = Problem(net, make_domain(net), 1e-9)
    eng = Engine(prob)
    items, top_regions = top_partition(eng, 1, split)
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
            "top_regions": len(top_regions), "wall": wall, "nodes": eng.stats.nodes}


class Tree:
    """Synthetic tree: task = (copy, recorded id); copy 0..C-1 scales costs by f[copy]."""

    def __init__(self, rec, n_copies, seed=0):
        rng = np.random.default_rng(seed)
        self.rec = rec
        self.cost = rec["cost"]
        self.kids = rec["kids"]
        self.copies = [(int(rng.choice(rec["roots"])), float(rng.lognormal(0.0, 0.3))) for _ in range(n_copies)]
        sub = subtree_sums(rec)
        self.total_work = sum(sub[r] * f for r, f in self.copies)

    def top(self):
        return [(c, self.copies[c][0]) for c in range(len(self.copies))]

    def task_cost(self, t):
        return self.cost[t[1]] * self.copies[t[0]][1]

    def children(self, t):
        return [(t[0], k) for k in self.kids[t[1]]]


def subtree_sums(rec):
    cost, kids = rec["cost"], rec["kids"]
    s = cost.copy()
    for t in range(len(cost) - 1, -1, -1):  # children have larger ids than parents
        for k in kids[t]:
            s[t] += s[k]
    return s


def simulate(tree, P, steal_latency, probe_latency, node_cost, low=4, max_steal=8, split=16, seed=0,
             backoff=(2e-5, 2e-3)):
    rng = random.Random(seed)
    # static partition, replicated on every rank
    # (the real expansion takes 1-node steps from the root: ~ node_cost per item produced; a
    # synthetic top task split here is approximated by the same cost, its work is then dropped)
    q = deque(tree.top())
    t_static = node_cost * len(q)
    while len(q) < split * P:
        if not q:
            break
        t = q.popleft()
        t_static += node_cost
        q.extend(tree.children(t))
    items = list(q)
    local = [[] for _ in range(P)]
    pub = [deque() for _ in range(P)]
    for i, it in enumerate(items):
        pub[i % P].append(it)
    outstanding = len(items)
    work = 0.0
    busy_t = [0.0] * P
    ev = [(t_static, r, 0) for r in range(P)]  # (time, rank, backoff level)
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
    work += t_static  # the serial baseline pays the expansion once
    return {"P": P, "makespan": end, "work": work, "efficiency": work / (P * end) if end > 0 else 1.0,
            "static_seconds": t_static, "steals": steals,
            "busy_max_over_mean": max(busy_t) / (sum(busy_t) / P)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default=str(REPO.parent / "shared" / "bench" / "nets" / "bench_d4_12x3.npz"))
    ap.add_argument("--budget", type=int, default=256)
    ap.add_argument("--regions", type=float, default=1e8)
    ap.add_argument("--ranks", default="1,4,16,64,256,1024,4096")
    ap.add_argument("--steal-latency", type=float, default=100e-6)
    ap.add_argument("--probe-latency", type=float, default=20e-6)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scaling.json"))
    a = ap.parse_args()
    rec = record(a.net, a.budget)
    n_reg = int(rec["regions"].sum()) + rec["top_regions"]
    per_root_regions = n_reg / len(rec["roots"])
    n_copies = max(1, int(round(a.regions / per_root_regions)))
    tree = Tree(rec, n_copies)
    c = rec["cost"]
    info = {"network": os.path.basename(a.net), "budget_nodes": a.budget, "recorded_tasks": int(len(c)),
            "recorded_regions": n_reg, "recorded_seconds": rec["wall"], "recorded_nodes": rec["nodes"],
            "task_cost_mean_s": float(c.mean()), "task_cost_p99_s": float(np.quantile(c, 0.99)),
            "task_cost_max_s": float(c.max()), "synthetic_copies": n_copies,
            "synthetic_regions": n_copies * per_root_regions, "synthetic_work_s": tree.total_work,
            "steal_latency_s": a.steal_latency, "probe_latency_s": a.probe_latency}
    print(json.dumps(info, indent=1), flush=True)
    results = []
    for P in [int(x) for x in a.ranks.split(",")]:
        t0 = time.perf_counter()
        r = simulate(tree, P, a.steal_latency, a.probe_latency, rec["wall"] / rec["nodes"])
        r["sim_seconds"] = time.perf_counter() - t0
        results.append(r)
        print(f"P={P:5d} efficiency {r['efficiency']:.3f} makespan {r['makespan']:.2f} s "
              f"static {r['static_seconds']:.3f} s steals {r['steals']} busy max/mean {r['busy_max_over_mean']:.3f}"
              f" ({r['sim_seconds']:.0f} s to simulate)", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"model": info, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

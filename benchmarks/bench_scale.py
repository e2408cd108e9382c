"""Time per full-batch step and peak memory of each estimator as N grows, on one process and on 2 data-parallel ones.

For each estimator (MeanFieldNODERegressor at width 256, 10 layers; RKHSNODEClassifier and VarProSHLRegressor at
their defaults, full batch) and each N (default 1e4, 1e5, 1e6; ``--max-n 1e7`` adds 1e7 where it fits), a fresh
Python process generates ``N x 10`` float64 data, fits once with ``max_iter=1`` and once with ``max_iter=3``
(``early_stopping=False``) and reports

* the time of one step, ``(t(3) - t(1)) / 2`` (the set-up and the diagnostics cancel out);
* the peak resident memory of the process (``ru_maxrss``) and the same before the fit (data and imports), so
  that ``peak - before`` is what fitting costs on top of the data.

With ``--ranks 2`` the same fits run data-parallel: 2 processes in a gloo process group on this machine, each
holding N/2 rows (``skflow.distributed``: every rank calls ``fit`` on its own rows and all end with the model
one process would fit on all of them); the per-rank peak is reported. The log-log slopes of time against N
are fitted (1 is linear). Everything is pinned to one thread per process (``torch.set_num_threads(1)``).

Run: ``python benchmarks/bench_scale.py [--quick] [--max-n 1e6] [--ranks 1 2]``.
Writes ``benchmarks/results/bench_scale.{json,png}``.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

CHILD = r"""
import os, resource, sys, time, warnings
import numpy as np, torch
torch.set_num_threads(1)
warnings.simplefilter("ignore")
import skflow

name, N, rank, world, port = sys.argv[1], int(float(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if world > 1:
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
rows = np.array_split(np.arange(N), world)[rank]
rng = np.random.default_rng(rank)
X = rng.normal(size=(len(rows), 10))
y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
if name == "rkhs":
    y = (y > 0).astype(int)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make(max_iter):
    kw = dict(max_iter=max_iter, early_stopping=False, random_state=0, compile=False)
    if name == "node":
        return skflow.MeanFieldNODERegressor(width=256, n_layers=10, learning_rate=0.1, **kw)
    if name == "rkhs":
        return skflow.RKHSNODEClassifier(batch_size=None, tol=0.0, **kw)
    return skflow.VarProSHLRegressor(alpha=1e-3, **kw)


times = []
for max_iter in (1, 3):
    t0 = time.perf_counter()
    make(max_iter).fit(X, y)
    times.append(time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT", (times[1] - times[0]) / 2, peak, before, flush=True)
"""


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def run(name, N, world, timeout):
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, name, str(N), str(r), str(world), port], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world)]
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            return None
        line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT")]
        if not line:
            print(f"   {name} N={N:g} ranks={world}: failed\n{stderr[-2000:]}")
            return None
        out.append([float(v) for v in line[0].split()[1:]])
    step = max(o[0] for o in out)
    return dict(step_s=step, peak_mb=max(o[1] for o in out), before_mb=max(o[2] for o in out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-n", type=float, default=1e6)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--estimators", nargs="+", default=["node", "rkhs", "varpro"])
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    sizes = [1e3, 3e3] if args.quick else [n for n in (1e4, 1e5, 1e6, 1e7) if n <= args.max_n]
    rows = []
    print(f"{'estimator':9s} {'ranks':>5s} {'N':>9s} {'step (s)':>10s} {'peak RSS (MB)':>14s} "
          f"{'before fit (MB)':>16s} {'fit adds (MB)':>14s}")
    for name in args.estimators:
        for world in args.ranks:
            for N in sizes:
                r = run(name, int(N), world, args.timeout)
                if r is None:
                    continue
                r.update(estimator=name, ranks=world, N=N)
                rows.append(r)
                print(f"{name:9s} {world:5d} {N:9.0e} {r['step_s']:10.3f} {r['peak_mb']:14.0f} {r['before_mb']:16.0f} "
                      f"{r['peak_mb'] - r['before_mb']:14.0f}", flush=True)
    print("\nlog-log slope of the step time against N (1 = linear):")
    for name in args.estimators:
        for world in args.ranks:
            sel = [r for r in rows if r["estimator"] == name and r["ranks"] == world and r["step_s"] > 0]
            if len(sel) >= 2:
                slope = np.polyfit(np.log([r["N"] for r in sel]), np.log([r["step_s"] for r in sel]), 1)[0]
                print(f"  {name:9s} ranks={world}: {slope:.2f}")
    os.makedirs(RESULTS, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    with open(os.path.join(RESULTS, f"bench_scale{suffix}.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in args.estimators:
        for world in args.ranks:
            sel = [r for r in rows if r["estimator"] == name and r["ranks"] == world]
            if sel:
                ls = "-" if world == 1 else "--"
                axes[0].loglog([r["N"] for r in sel], [r["step_s"] for r in sel], ls, marker="o",
                               label=f"{name}, {world} rank(s)")
                axes[1].loglog([r["N"] for r in sel], [max(r["peak_mb"], 1) for r in sel], ls, marker="o",
                               label=f"{name}, {world} rank(s)")
    axes[0].set(xlabel="N (rows, all ranks)", ylabel="seconds per full-batch step")
    axes[1].set(xlabel="N (rows, all ranks)", ylabel="peak RSS per process (MB)")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, f"bench_scale{suffix}.png"), dpi=120)


if __name__ == "__main__":
    main()

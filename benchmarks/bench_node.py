"""Cost of one training step of MeanFieldNODERegressor (engine ``MeanFieldSHLFlow.step``, full batch).

One explicit step of the Conditional-Wasserstein gradient flow (SPEC section 1) is a forward pass through the
``S`` layers and the discrete adjoint back. Per layer it does six dense products of the shapes
``(N x D) @ (D x M)`` / ``(N x M) @ (M x D)`` (and their transposes) plus ``O(N M)`` elementwise work
(``sigma`` and ``sigma'``), so its cost should be linear in each of ``N`` (samples), ``S`` (depth) and
``M`` (width): about ``12 N M D S`` flops.

For growing ``N``, ``S`` and ``M`` separately (the other two fixed) this script

* times ``flow.step`` (warm-up, then the median of several repeats; ``torch.cuda.synchronize`` on the GPU);
* times, in the same run and on the same shapes, a bare ``torch.matmul`` workload doing those six products
  per layer (the same flop count, no elementwise work, no allocation of the caches), and reports the fraction
  of its throughput the step reaches (``matmul time / step time``, i.e. step GFLOP/s over matmul GFLOP/s);
* fits the log-log slopes of time against ``N``, ``S`` and ``M`` (cost exponents; ~1 expected);
* compares float32 with float64 on the CPU;
* measures the per-iteration overhead of the estimator's fit loop over the bare step (history buffers,
  divergence / early-stopping bookkeeping): a ``monitor`` passed to ``fit`` timestamps every iteration, and
  the fitted engine's public ``flow_.step`` is timed alone on the same shapes.

It runs on the CPU, and also on CUDA when ``torch.cuda.is_available()``. Tables are printed and written to
``benchmarks/results/bench_node.{txt,json}``; the plot (time against N, S, M with the fitted lines) to
``benchmarks/results/bench_node.png``.

Run: ``python benchmarks/bench_node.py [--quick] [--threads T] [--no-cuda]``

``--threads`` sets ``torch.set_num_threads``. On a shared, oversubscribed machine use ``--threads 1``: two
OpenMP threads competing with other processes for two cores can make every kernel tens of times slower.
"""

import argparse
import json
import os
import statistics
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from skflow import MeanFieldNODERegressor  # noqa: E402
from skflow.flows.node import MeanFieldSHLFlow, init_particles  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DTYPES = {"float64": torch.float64, "float32": torch.float32}


# ---------------------------------------------------------------------------------------------- workloads
def make_problem(N, S, M, d, d_out, dtype, device, seed=0):
    """An engine at a (slightly trained) state, with standardised random inputs and targets."""
    gen = torch.Generator().manual_seed(seed)
    D = d + d_out
    U, W, b = init_particles(S, M, D, "gaussian", 0.25, generator=gen, dtype=torch.float64)
    to = dict(dtype=dtype, device=device)
    flow = MeanFieldSHLFlow(U.to(**to), W.to(**to), b.to(**to), d, d_out, activation="cos", output_scale=4.0)
    X = torch.randn(N, d, generator=gen, dtype=torch.float64).to(**to)
    Y = torch.randn(N, d_out, generator=gen, dtype=torch.float64).to(**to)
    return flow, X, Y


def step_flops(N, S, M, D):
    """Dense flops of one step: 6 products of 2 N M D flops per layer (3 forward-ish, 3 in the adjoint)."""
    return 12.0 * N * M * D * S


def matmul_workload(N, S, M, D, dtype, device, seed=0):
    """A closure doing, per layer, the six products of the step's shapes (same flops, nothing else)."""
    gen = torch.Generator().manual_seed(seed)
    to = dict(dtype=dtype, device=device)

    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(**to)

    Z, P = r(N, D), r(N, D)  # states and adjoints
    A = r(N, M)  # activations
    Ws = [r(M, D) for _ in range(S)]
    Us = [r(M, D) for _ in range(S)]
    out_nm = torch.empty(N, M, **to)
    out_nd = torch.empty(N, D, **to)
    out_md = torch.empty(M, D, **to)

    def run():
        for k in range(S):
            torch.mm(Z, Ws[k].T, out=out_nm)  # pre-activation  (N x D) @ (D x M)
            torch.mm(A, Us[k], out=out_nd)  # residual        (N x M) @ (M x D)
            torch.mm(A.T, P, out=out_md)  # dR/dU           (M x N) @ (N x D)
            torch.mm(P, Us[k].T, out=out_nm)  # p U^T           (N x D) @ (D x M)
            torch.mm(A.T, Z, out=out_md)  # dR/dW           (M x N) @ (N x D)
            torch.mm(A, Ws[k], out=out_nd)  # adjoint update  (N x M) @ (M x D)

    return run


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device, warmup, repeats, min_block=0.02):
    """Median over ``repeats`` of the time per call; each repeat times a block of calls lasting >= min_block."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_block / one))
    samples = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def bench_config(N, S, M, d, d_out, dtype, device, warmup, repeats):
    D = d + d_out
    flow, X, Y = make_problem(N, S, M, d, d_out, DTYPES[dtype], device)
    t_step = time_call(lambda: flow.step(X, Y, 1e-3), device, warmup, repeats)
    flow = X = Y = None  # free the problem's memory before the matmul workload (the lambda is done with it)
    mm = matmul_workload(N, S, M, D, DTYPES[dtype], device)
    t_mm = time_call(mm, device, warmup, repeats)
    del mm
    t_act = time_call(activation_workload(N, S, M, DTYPES[dtype], device), device, warmup, repeats)
    fl = step_flops(N, S, M, D)
    return dict(N=N, S=S, M=M, D=D, dtype=dtype, device=str(device), step_s=t_step, matmul_s=t_mm, act_s=t_act,
                gflops_step=fl / t_step / 1e9, gflops_matmul=fl / t_mm / 1e9, matmul_fraction=t_mm / t_step)


def fit_slope(x, t):
    """Least-squares slope and intercept of log t against log x."""
    slope, icpt = np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(t, float)), 1)
    return float(slope), float(icpt)


# ---------------------------------------------------------------------------------------------- estimator
def loop_overhead(N, S, M, d, dtype, k):
    """Time one ``MeanFieldNODERegressor.fit`` of ``k`` iterations (CPU), split into the set-up, the iterations
    and the final diagnostics; and an iteration into the engine's step and the rest (the fit loop's bookkeeping).

    Only public means: a ``monitor`` passed to ``fit`` takes a timestamp after every iteration (an iteration is
    the median of the deltas between consecutive ones; the set-up runs from the call to the first timestamp,
    less one iteration; the final diagnostics from the last timestamp to the return), and the bare step is
    timed afterwards by calling the fitted engine ``est.flow_.step(X, Y, lr)`` on tensors of the same shapes.
    A monitor makes the loop bring every record to the host (one synchronisation per iteration, free on the CPU).
    """
    rng = np.random.RandomState(0)
    X = rng.standard_normal((N, d))
    y = rng.standard_normal(N)
    stamps = []

    def monitor(i, estimator, record):
        stamps.append(time.perf_counter())
        return False

    est = MeanFieldNODERegressor(n_layers=S, width=M, max_iter=k, tol=0.0, early_stopping=False,
                                 learning_rate=1e-3, dtype=dtype, device="cpu", random_state=0,
                                 kernel_subsample=min(N, 500))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        est.fit(X, y, monitor=monitor)
        total = time.perf_counter() - t0
    iteration = statistics.median(np.diff(stamps)) if len(stamps) > 1 else float("nan")
    to = dict(dtype=DTYPES[dtype], device="cpu")
    Xt, Yt = torch.as_tensor(X, **to), torch.as_tensor(y[:, None], **to)
    step = time_call(lambda: est.flow_.step(Xt, Yt, 1e-3), "cpu", 2, 5)
    return dict(total_s=total, iterations=len(stamps), setup_s=stamps[0] - t0 - iteration, iteration_s=iteration,
                step_s=step, finalize_s=t0 + total - stamps[-1], other_per_iter_s=iteration - step)


def activation_workload(N, S, M, dtype, device, seed=0):
    """``sigma(a), sigma'(a)`` for cos (``cos a`` and ``-sin a``) on an (N x M) block, S times."""
    from skflow.flows.node import ACTIVATIONS

    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(N, M, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    act = ACTIVATIONS["cos"]

    def run():
        for _ in range(S):
            act(A)

    return run


# ---------------------------------------------------------------------------------------------- report
def table(rows, vary, lines):
    head = (f"{vary:>6s} {'N':>6s} {'S':>4s} {'M':>6s} {'step (ms)':>10s} {'matmul (ms)':>11s} "
            f"{'act (ms)':>8s} {'step GF/s':>9s} {'mm GF/s':>8s} {'fraction':>8s} {'(mm+act)/step':>13s}")
    lines.append(head)
    print(head, flush=True)
    for r in rows:
        line = (f"{r[vary]:6d} {r['N']:6d} {r['S']:4d} {r['M']:6d} {1e3 * r['step_s']:10.2f} "
                f"{1e3 * r['matmul_s']:11.2f} {1e3 * r['act_s']:8.2f} {r['gflops_step']:9.2f} "
                f"{r['gflops_matmul']:8.2f} "
                f"{r['matmul_fraction']:8.2f} {(r['matmul_s'] + r['act_s']) / r['step_s']:13.2f}")
        lines.append(line)
        print(line, flush=True)


def plot(sweeps, grid, path):
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, vary in zip(axes, ("N", "S", "M")):
        for (dev, dtype), rows in sweeps[vary].items():
            x = np.array([r[vary] for r in rows], float)
            for key, marker, ls, label in (("step_s", "o", "-", "step"), ("matmul_s", "s", ":", "matmul workload"),
                                           ("act_s", "^", ":", "cos/sin workload")):
                t = np.array([r[key] for r in rows])
                s, c = fit_slope(x, t)
                line = ax.loglog(x, t, marker, label=f"{label} {dev} {dtype}: slope {s:.2f}",
                                 mfc="none" if key != "step_s" else None)[0]
                xx = np.geomspace(x.min(), x.max(), 50)
                ax.loglog(xx, np.exp(c) * xx ** s, ls, color=line.get_color())
        ax.set_xticks(grid[vary])
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        fixed = {k: v for k, v in sweeps["base"].items() if k != vary}
        ax.set_title(f"time per step vs {vary}  ({', '.join(f'{k}={v}' for k, v in fixed.items())})", fontsize=9)
        ax.set_xlabel(vary)
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("MeanFieldSHLFlow.step (full batch, cos): cost is expected linear in N, S and M", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer, smaller configurations (under a minute)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--no-cuda", action="store_true", help="skip the CUDA runs even if a GPU is present")
    p.add_argument("--d", type=int, default=10, help="input dimension (D = d + 1)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    d, d_out = a.d, 1
    if a.quick:
        base = dict(N=500, S=4, M=128)
        grid = dict(N=[250, 500, 1000, 2000], S=[2, 4, 8, 16], M=[64, 128, 256, 512])
        warmup, repeats, k_loop = 2, 5, 40
    else:
        base = dict(N=1000, S=8, M=256)
        grid = dict(N=[250, 500, 1000, 2000, 4000], S=[2, 4, 8, 16, 32], M=[64, 128, 256, 512, 1024])
        warmup, repeats, k_loop = 3, 7, 60
    devices = ["cpu"]
    if torch.cuda.is_available() and not a.no_cuda:
        devices.append("cuda")
    lines = [f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, devices {devices}, "
             f"d={d}, d_out={d_out} (D={d + d_out}), activation cos, full batch",
             f"base configuration {base}; warm-up {warmup}, median of {repeats} repeats",
             "fraction = matmul time / step time = (step GFLOP/s) / (matmul GFLOP/s); flops = 12 N M D S",
             "act = cos and -sin (sigma, sigma') on the S (N x M) pre-activations alone; "
             "(mm+act)/step: how much of the step those two workloads explain"]
    print("\n".join(lines), flush=True)
    record = []
    sweeps = {"base": base, "N": {}, "S": {}, "M": {}}
    slopes = []
    runs = [(dev, "float64") for dev in devices] + [(dev, "float32") for dev in devices if dev == "cuda"]
    for dev, dtype in runs:
        for vary in ("N", "S", "M"):
            lines.append(f"\n== {dev} {dtype}: time per step vs {vary} ==")
            print(lines[-1], flush=True)
            rows = []
            for v in grid[vary]:
                cfg = dict(base, **{vary: v})
                rows.append(bench_config(cfg["N"], cfg["S"], cfg["M"], d, d_out, dtype, dev, warmup, repeats))
            table(rows, vary, lines)
            sweeps[vary][(dev, dtype)] = rows
            record.extend(dict(r, sweep=vary) for r in rows)
            x = [r[vary] for r in rows]
            s_step, _ = fit_slope(x, [r["step_s"] for r in rows])
            s_mm, _ = fit_slope(x, [r["matmul_s"] for r in rows])
            # the upper half of the range, where fixed per-call overheads matter least
            s_hi, _ = fit_slope(x[len(x) // 2:], [r["step_s"] for r in rows][len(x) // 2:])
            slopes.append(dict(device=dev, dtype=dtype, vary=vary, step=s_step, step_upper=s_hi, matmul=s_mm))

    lines.append("\n== cost exponents: slope of log(time) against log(N | S | M) ==")
    lines.append(f"{'device':>6s} {'dtype':>8s} {'vary':>4s} {'step':>6s} {'step, upper half':>16s} {'matmul':>7s}")
    for s in slopes:
        lines.append(f"{s['device']:>6s} {s['dtype']:>8s} {s['vary']:>4s} {s['step']:6.2f} {s['step_upper']:16.2f} "
                     f"{s['matmul']:7.2f}")
    print("\n".join(lines[-len(slopes) - 2:]), flush=True)

    # float32 against float64 on the CPU, at the base and at the largest configuration of each sweep
    lines.append("\n== CPU float32 vs float64 (time per step) ==")
    lines.append(f"{'N':>6s} {'S':>4s} {'M':>6s} {'float64 (ms)':>12s} {'float32 (ms)':>12s} {'speed-up':>8s} "
                 f"{'f32 matmul fraction':>19s}")
    print("\n".join(lines[-2:]), flush=True)
    cfgs = [base] + [dict(base, **{v: grid[v][-1]}) for v in ("N", "S", "M")]
    for cfg in cfgs:
        r64 = bench_config(cfg["N"], cfg["S"], cfg["M"], d, d_out, "float64", "cpu", warmup, repeats)
        r32 = bench_config(cfg["N"], cfg["S"], cfg["M"], d, d_out, "float32", "cpu", warmup, repeats)
        record.extend(dict(r, sweep="dtype") for r in (r64, r32))
        lines.append(f"{cfg['N']:6d} {cfg['S']:4d} {cfg['M']:6d} {1e3 * r64['step_s']:12.2f} "
                     f"{1e3 * r32['step_s']:12.2f} {r64['step_s'] / r32['step_s']:8.2f} "
                     f"{r32['matmul_fraction']:19.2f}")
        print(lines[-1], flush=True)

    # the estimator's fit loop over the bare engine step
    lines.append(f"\n== MeanFieldNODERegressor.fit, {k_loop} iterations (CPU float64, base configuration, "
                 "early_stopping=False) ==")
    print(lines[-1], flush=True)
    lo = loop_overhead(base["N"], base["S"], base["M"], d, "float64", k_loop)
    lines.append(f"total {lo['total_s']:.2f}s = set-up {lo['setup_s']:.2f}s + {lo['iterations']} x iteration "
                 f"{1e3 * lo['iteration_s']:.2f} ms + final diagnostics {lo['finalize_s']:.2f}s; an iteration = step "
                 f"{1e3 * lo['step_s']:.2f} ms + loop bookkeeping {1e3 * lo['other_per_iter_s']:.2f} ms "
                 f"({100 * lo['other_per_iter_s'] / lo['step_s']:.1f}% of a step)")
    print(lines[-1], flush=True)
    record.append(dict(sweep="fit_loop", max_iter=k_loop, **lo, **base))

    lines.append(f"\ntotal {time.perf_counter() - t_start:.0f}s")
    print(lines[-1])
    os.makedirs(RESULTS, exist_ok=True)
    plot(sweeps, grid, os.path.join(RESULTS, "bench_node.png"))
    with open(os.path.join(RESULTS, "bench_node.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(RESULTS, "bench_node.json"), "w") as f:
        json.dump(dict(config=dict(base=base, grid=grid, d=d, threads=torch.get_num_threads()),
                       results=record, slopes=slopes), f, indent=1)
    print(f"wrote {os.path.join(RESULTS, 'bench_node.png')} and bench_node.{{txt,json}}")


if __name__ == "__main__":
    main()

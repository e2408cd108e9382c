"""One training step of each skflow engine against the ways a user would otherwise train the same model.

Mean-field NODE (``MeanFieldSHLFlow.step``, full batch, Euler, cos activation) against

* ``torchdiffeq``: ``odeint(..., method='euler')`` on the fixed grid ``s_k = k/S`` (how the thesis's
  experiments were run), the layer's particles picked by ``s``, autograd through the solver;
* ``eager``: the plain PyTorch loop ``z <- z + (1/S) F_k(z)`` with autograd;
* ``compiled``: that loop (forward and loss) under ``torch.compile``, autograd through the compiled graph.

RKHS NODE (``RKHSFlow.step``) against the plain autograd loop, eager and compiled; VarPro (``VarProFlow.step``
with the one-timescale ``solver='gd'``, and the full VarPro step with its exact projection) against plain
gradient descent with autograd on the same two-layer network, eager and compiled.

Every contender takes the same step (same loss, gradient and update): this is checked in float64 first, on
each size (relative difference of the gradients printed). The steps are timed interleaved, round after round,
and the median is kept; ``torch.set_num_threads`` is pinned. Ratios are ``peer time / skflow time`` (above 1:
skflow is faster). ``matmul share`` is the time the step's own matrix products take alone (same shapes, same
layout, back to back) over the step's time: the fraction of the matmuls' throughput the step reaches.
skflow is timed with its eager engine (``compile=False``: hand-written adjoint, in-place eager kernels) and with
``compile=True`` (each block of rows runs as one graph compiled by TorchInductor, the activations fused into the
adjoint sweep); the compilation itself is timed separately (first call in the process).

``--estimator`` times instead what a user gets through the public ``MeanFieldNODERegressor`` at its default
``compile='auto'``, in a process that has fitted the same configuration once before: one default fit first
(its step graph, not on disk yet, is built meanwhile in a background process; the script waits for it and
reports how long the build took), then, interleaved round after round, an iteration of default fits (a
``monitor`` timestamps every iteration; the median delta), of ``compile=False`` fits, and a step of the
peers above. ``--cold`` first empties the package cache (a first fit on a new machine); ``--device cuda`` runs the same
comparison on a GPU (CUDA packages; every timed call ends with ``torch.cuda.synchronize``).

Run: ``python benchmarks/bench_peers.py [--quick] [--threads 1] [--rounds 15] [--engines node,rkhs,varpro]``,
``python benchmarks/bench_peers.py --estimator [--cold]``.
Tables go to stdout and to ``benchmarks/results/bench_peers.json``, the plot to
``benchmarks/results/bench_peers.png``.
Needs ``torchdiffeq`` (``pip install torchdiffeq``; its row is skipped without it).
"""

import argparse
import json
import math
import os
import statistics
import time
import warnings

import numpy as np
import torch

from skflow import MeanFieldNODERegressor
from skflow.flows.node import MeanFieldSHLFlow, init_particles
from skflow.flows.rkhs import RKHSFlow, init_random_features
from skflow.flows.varpro import VarProFlow
from skflow.precompile import cache_dir, pending_builds, wait_for_builds

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DTYPES = {"float32": torch.float32, "float64": torch.float64}

try:
    from torchdiffeq import odeint
except ImportError:  # pragma: no cover - optional peer
    odeint = None


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(contenders, rounds):
    """Median seconds of each callable, timed in turns (each once per round, after one warm-up call)."""
    for fn in contenders.values():
        fn()
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            times[name].append(_timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def rel_diff(a, b):
    return max(float((x - y).abs().max() / y.abs().max().clamp(min=1e-300)) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------------ NODE
def node_problem(N, M, S, D, dtype, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    Y = torch.sin(X[:, :1] + X[:, 1:2])
    U, W, b = init_particles(S, M, D, "gaussian", 0.5, generator=g)
    U = 0.3 * torch.randn(U.shape, generator=g, dtype=torch.float64)  # a trained-like state, not the identity
    flow = MeanFieldSHLFlow(U, W, b, d, 1, activation="cos", output_scale=4.0)
    return flow.to(dtype=dtype), X.to(dtype), Y.to(dtype)


def node_peer_loss(U, W, b, X, Y, d, scale, odeint_fn=None):
    """The same model written as a user would: autograd loop, or torchdiffeq's fixed-grid Euler."""
    S, M, D = U.shape
    z = torch.cat([X, X.new_zeros(X.shape[0], D - d)], 1)

    def field(t, z):
        k = min(int(round(float(t) * S)), S - 1)  # Euler evaluates at the grid points s_k = k / S only
        return torch.cos(z @ W[k].T + b[k]) @ U[k] / M

    if odeint_fn is None:
        for k in range(S):
            z = z + field(k / S, z) / S
    else:
        z = odeint_fn(field, z, torch.linspace(0, 1, S + 1, dtype=X.dtype, device=X.device), method="euler")[-1]
    r = scale * z[:, d:d + 1] - Y
    return 0.5 * (r * r).sum() / X.shape[0]


def autograd_step(loss_fn, params, lr_scale, lr):
    """One explicit step theta <- theta - lr * lr_scale * dR/dtheta with autograd, parameters updated in place."""
    for p in params:
        p.grad = None
    loss = loss_fn(*params)
    loss.backward()
    with torch.no_grad():
        for p in params:
            p.sub_(p.grad, alpha=lr * lr_scale)
    return loss


def node_matmuls(flow, X):
    """The step's own products, same shapes and layout (one block of rows, as the engine runs them)."""
    S, M, D = flow.U.shape
    n = min(X.shape[0], flow.block_rows(X.device, n=X.shape[0]))
    blocks = math.ceil(X.shape[0] / n)
    z = torch.randn(D, n, dtype=X.dtype)
    s = torch.randn(n, M, dtype=X.dtype)
    gT = torch.zeros(D, M, dtype=X.dtype)
    U, W = flow.U, flow.W

    def run():
        for _ in range(blocks):
            for k in range(S):
                torch.mm(z.T, W[k].T)
                torch.addmm(z, U[k].T, s.T)
                gT.addmm_(z, s)
                torch.mm(z.T, U[k].transpose(0, 1))
                gT.addmm_(z, s)
                torch.addmm(z, W[k].T, s.T)
    return run


def bench_node(sizes, rounds, compiled_peer):
    rows = []
    for (N, M, S, D) in sizes:
        for dname, dtype in DTYPES.items():
            flow, X, Y = node_problem(N, M, S, D, dtype)
            d, scale, lr, SM = 10, flow.output_scale, 1e-3, float(S * M)
            params = [t.clone().requires_grad_(True) for t in (flow.U, flow.W, flow.b)]
            eager = lambda U, W, b: node_peer_loss(U, W, b, X, Y, d, scale)  # noqa: E731
            diffeq = lambda U, W, b: node_peer_loss(U, W, b, X, Y, d, scale, odeint)  # noqa: E731
            contenders = {
                "skflow": lambda: flow.step(X, Y, lr),
                "eager": lambda: autograd_step(eager, params, SM, lr),
            }
            check = {"eager": eager}
            if odeint is not None:
                contenders["torchdiffeq"] = lambda: autograd_step(diffeq, params, SM, lr)
                check["torchdiffeq"] = diffeq
            compile_s = {}
            if compiled_peer:
                comp = torch.compile(eager)
                compile_s["compiled"] = _timed(lambda: autograd_step(comp, params, SM, 0.0))
                contenders["compiled"] = lambda: autograd_step(comp, params, SM, lr)
            fcomp = flow.to()
            fcomp.compiled = True
            compile_s["skflow+compile"] = _timed(lambda: fcomp.gradients(X, Y))
            contenders["skflow+compile"] = lambda: fcomp.step(X, Y, lr)
            if dtype == torch.float64:  # same loss and gradient, before any step
                ref = flow.gradients(X, Y)
                for name, fn in check.items():
                    ps = [t.clone().requires_grad_(True) for t in (flow.U, flow.W, flow.b)]
                    loss = fn(*ps)
                    grads = torch.autograd.grad(loss, ps)
                    print(f"  NODE {N}x{M}x{S}x{D} {name}: |dR| rel diff {rel_diff(grads, ref[1:]):.1e}, "
                          f"|R| rel diff {abs(float(loss) / float(ref[0]) - 1):.1e}")
            t = interleaved(contenders, rounds)
            t_mm = interleaved({"mm": node_matmuls(flow, X), "mm+compile": node_matmuls(fcomp, X)}, rounds)
            rows.append(dict(engine="node", size=f"N={N} M={M} S={S} D={D}", dtype=dname, times=t, matmul=t_mm,
                             compile=compile_s))
            print_row(rows[-1])
    return rows


def _synced(fn, device):
    """``fn`` followed by a device synchronisation (CUDA), so that its time is the device's."""
    if device == "cpu":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def estimator_iteration(params, X, y, iterations):
    """Median seconds of one iteration of ``MeanFieldNODERegressor(**params).fit(X, y)`` (a monitor's
    timestamps), and whether its steps ran the configuration's own compiled graph (``flow_.graph_tier``)."""
    stamps = []

    def monitor(i, estimator, record):
        stamps.append(time.perf_counter())
        return False

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MeanFieldNODERegressor(**params, max_iter=iterations).fit(X, y, monitor=monitor)
    return statistics.median(np.diff(stamps)), getattr(est.flow_, "graph_tier", None) == "shape"


def bench_estimator(sizes, rounds, compiled_peer, cold=False, iterations=12, device="cpu"):
    """Per-iteration time through the public estimator at ``compile='auto'`` (see the module documentation)."""
    import shutil

    if cold:
        shutil.rmtree(cache_dir(), ignore_errors=True)
    rows = []
    for (N, M, S, D) in sizes:
        for dname, dtype in DTYPES.items():
            flow, Xt, Yt = node_problem(N, M, S, D, dtype)
            d, scale, lr, SM = 10, flow.output_scale, 1e-3, float(S * M)
            X, y = Xt.double().numpy(), Yt[:, 0].double().numpy()
            flow, Xt, Yt = flow.to(device), Xt.to(device), Yt.to(device)
            params = dict(width=M, n_layers=S, extra_dims=D - d - 1, dtype=dname, early_stopping=False, tol=0.0,
                          learning_rate=lr, random_state=0, device=device)
            start = time.perf_counter()
            estimator_iteration(params, X, y, 3)  # the configuration's first fit in this process
            waiting = bool(pending_builds())
            wait_for_builds(900)
            build_s = time.perf_counter() - start if waiting else 0.0
            ps = [t.clone().requires_grad_(True) for t in (flow.U, flow.W, flow.b)]
            eager = lambda U, W, b: node_peer_loss(U, W, b, Xt, Yt, d, scale)  # noqa: E731
            contenders = {"eager": lambda: autograd_step(eager, ps, SM, lr)}
            if odeint is not None:
                diffeq = lambda U, W, b: node_peer_loss(U, W, b, Xt, Yt, d, scale, odeint)  # noqa: E731
                contenders["torchdiffeq"] = lambda: autograd_step(diffeq, ps, SM, lr)
            if compiled_peer:
                comp = torch.compile(eager)
                autograd_step(comp, ps, SM, 0.0)
                contenders["compiled"] = lambda: autograd_step(comp, ps, SM, lr)
            contenders = {name: _synced(fn, device) for name, fn in contenders.items()}
            times = {name: [] for name in ["skflow default", "skflow compile=False", *contenders]}
            live = []
            for _ in range(rounds):
                t, on = estimator_iteration(params, X, y, iterations)
                times["skflow default"].append(t)
                live.append(on)
                times["skflow compile=False"].append(estimator_iteration({**params, "compile": False}, X, y,
                                                                         iterations)[0])
                for name, fn in contenders.items():
                    fn()
                    times[name].append(statistics.median(_timed(fn) for _ in range(iterations)))
            t = {name: statistics.median(v) for name, v in times.items()}
            rows.append(dict(engine="node (estimator)", size=f"N={N} M={M} S={S} D={D}", dtype=dname, times=t,
                             background_build_s=build_s, compiled_rounds=sum(live)))
            ratio = "  ".join(f"{k} {1e3 * v:.2f} ms ({v / t['skflow default']:.2f}x)" for k, v in t.items())
            print(f"NODE estimator {rows[-1]['size']} {dname}: {ratio}; compiled in {sum(live)}/{rounds} rounds; "
                  f"background build {build_s:.1f} s", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ RKHS
def rkhs_problem(N, M, S, d, K, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    Y = torch.nn.functional.one_hot(torch.randint(K, (N,), generator=g), K).double()
    W, b = init_random_features(M, d + K, generator=g)
    theta = 0.3 * torch.randn(S, d + K, M, generator=g, dtype=torch.float64)
    return RKHSFlow(theta, W, b, d, output_scale=2.0).to(dtype=dtype), X.to(dtype), Y.to(dtype)


def rkhs_peer_loss(theta, W, b, X, Y, d, scale):
    S, D, M = theta.shape
    z = torch.cat([X, X.new_zeros(X.shape[0], D - d)], 1)
    for k in range(S):
        z = z + (math.sqrt(2.0 / M) * torch.cos(z @ W.T + b)) @ theta[k].T / S
    logits = scale * z[:, d:]
    return -(Y * torch.log_softmax(logits, 1)).sum() / X.shape[0]


def rkhs_matmuls(flow, X):
    S, D, M = flow.theta.shape
    n = min(X.shape[0], flow.block_rows(X.device, n=X.shape[0]))
    blocks = math.ceil(X.shape[0] / n)
    z, s, gT = torch.randn(D, n, dtype=X.dtype), torch.randn(n, M, dtype=X.dtype), torch.zeros(D, M, dtype=X.dtype)

    def run():
        for _ in range(blocks):
            for k in range(S):
                torch.mm(z.T, flow.W.T)
                torch.addmm(z, flow.theta[k], s.T)
                gT.addmm_(z, s)
                torch.mm(z.T, flow.theta[k])
                torch.addmm(z, flow.W.T, s.T)
    return run


def bench_rkhs(sizes, rounds, compiled_peer):
    rows = []
    for (N, M, S, d, K) in sizes:
        for dname, dtype in DTYPES.items():
            flow, X, Y = rkhs_problem(N, M, S, d, K, dtype)
            lr = 1e-2
            params = [flow.theta.clone().requires_grad_(True)]
            eager = lambda th: rkhs_peer_loss(th, flow.W, flow.b, X, Y, d, flow.output_scale)  # noqa: E731
            contenders = {"skflow": lambda: flow.step(X, Y, lr),
                          "eager": lambda: autograd_step(eager, params, float(S), lr)}
            compile_s = {}
            if compiled_peer:
                comp = torch.compile(eager)
                compile_s["compiled"] = _timed(lambda: autograd_step(comp, params, float(S), 0.0))
                contenders["compiled"] = lambda: autograd_step(comp, params, float(S), lr)
            fcomp = flow.to()
            fcomp.compiled = True
            compile_s["skflow+compile"] = _timed(lambda: fcomp.gradients(X, Y))
            contenders["skflow+compile"] = lambda: fcomp.step(X, Y, lr)
            if dtype == torch.float64:
                ref = flow.gradients(X, Y)
                th = flow.theta.clone().requires_grad_(True)
                (g,) = torch.autograd.grad(eager(th), th)
                print(f"  RKHS {N}x{M}x{S}: |dR| rel diff vs autograd {rel_diff([g], [ref[1]]):.1e}")
            t = interleaved(contenders, rounds)
            t_mm = interleaved({"mm": rkhs_matmuls(flow, X), "mm+compile": rkhs_matmuls(fcomp, X)}, rounds)
            rows.append(dict(engine="rkhs", size=f"N={N} M={M} S={S} D={d + K}", dtype=dname, times=t,
                             matmul=t_mm, compile=compile_s))
            print_row(rows[-1])
    return rows


# ------------------------------------------------------------------------------------------------ VarPro
def varpro_problem(N, M, d, dtype, solver, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    Y = torch.relu(X[:, :1]) - X[:, 1:2] ** 2
    omega = torch.randn(M, d + 1, generator=g, dtype=torch.float64) / math.sqrt(d)
    u = torch.randn(M, 1, generator=g, dtype=torch.float64)  # a trained-like state: u = 0 has zero gradients
    flow = VarProFlow(omega, u, lam=1e-2, activation="relu", solver=solver).to(dtype=dtype)
    X, Y = X.to(dtype), Y.to(dtype)
    flow.start(X, Y)
    return flow, X, Y


def varpro_peer_loss(omega, u, X, Y, lam):
    """The two-layer network of Eq. III.43 (data fit + lambda (1/M) |u|^2 / 2), divided by lambda."""
    M = omega.shape[0]
    Phi = torch.relu(torch.cat([X, X.new_ones(X.shape[0], 1)], 1) @ omega.T)
    r = Phi @ u / M - Y
    return (0.5 * (r * r).sum() / X.shape[0] + lam * 0.5 * (u * u).sum() / M) / lam


def varpro_matmuls(flow, X):
    """The gradient step's own products (features, output, outer product with u, X^T Ga, Phi^T r) per block."""
    M, dim = flow.omega.shape
    n = min(X.shape[0], flow.block_rows(X.device, n=X.shape[0]))
    blocks = math.ceil(X.shape[0] / n)
    Xb, Phi = X[:n], torch.randn(n, M, dtype=X.dtype)
    r = torch.randn(n, 1, dtype=X.dtype)
    om, u = flow.omega[:, :-1], flow.u

    def run():
        for _ in range(blocks):
            torch.mm(Xb, om.T)
            torch.mm(Phi, u)
            torch.mm(r, u.T)
            torch.mm(Xb.T, Phi)
            torch.mm(Phi.T, r)
    return run


def bench_varpro(sizes, rounds, compiled_peer):
    rows = []
    for (N, M, d) in sizes:
        for dname, dtype in DTYPES.items():
            flow, X, Y = varpro_problem(N, M, d, dtype, "gd")
            full, _, _ = varpro_problem(N, M, d, dtype, "varpro")
            lr, lam = 1e-3, 1e-2
            params = [flow.omega.clone().requires_grad_(True), flow.u.clone().requires_grad_(True)]
            eager = lambda om, u: varpro_peer_loss(om, u, X, Y, lam)  # noqa: E731
            contenders = {"skflow": lambda: flow.step(X, Y, lr), "eager": lambda: autograd_step(eager, params, M, lr),
                          "skflow varpro (with projection)": lambda: full.step(X, Y, lr)}
            compile_s = {}
            if compiled_peer:
                comp = torch.compile(eager)
                compile_s["compiled"] = _timed(lambda: autograd_step(comp, params, M, 0.0))
                contenders["compiled"] = lambda: autograd_step(comp, params, M, lr)
            fcomp = flow.to()
            fcomp.compiled = True
            compile_s["skflow+compile"] = _timed(lambda: fcomp.step(X, Y, 0.0))
            contenders["skflow+compile"] = lambda: fcomp.step(X, Y, lr)
            if dtype == torch.float64:  # the same gradients as autograd on the same network, before any step
                om, u = flow.omega.clone().requires_grad_(True), flow.u.clone().requires_grad_(True)
                g_om, g_u = torch.autograd.grad(eager(om, u), (om, u))
                # the engine's own gradients, read off one public step of a copy at time step 1 (solver 'gd':
                # omega <- omega - M tau dL/domega, u <- u - M tau dL/du, L = R / lambda), from the same state
                probe = flow.to()
                probe.step(X, Y, 1.0)
                G = (flow.omega - probe.omega) / M
                g_u_flow = (flow.u - probe.u) / M
                print(f"  VarPro {N}x{M}: |dL/domega| rel diff {rel_diff([G], [g_om]):.1e}, "
                      f"|dL/du| rel diff {rel_diff([g_u_flow], [g_u]):.1e}")
            t = interleaved(contenders, rounds)
            t_mm = interleaved({"mm": varpro_matmuls(flow, X), "mm+compile": varpro_matmuls(fcomp, X)}, rounds)
            rows.append(dict(engine="varpro", size=f"N={N} M={M} d={d}", dtype=dname, times=t, matmul=t_mm,
                             compile=compile_s))
            print_row(rows[-1])
    return rows


# ------------------------------------------------------------------------------------------------ report
def print_row(row):
    t = row["times"]
    base = t["skflow+compile"] if "skflow+compile" in t else t["skflow"]
    parts = [f"{k} {1e3 * v:8.2f} ms" for k, v in t.items()]
    ratios = [f"{k}/skflow {v / t['skflow']:.2f}" for k, v in t.items() if not k.startswith("skflow")]
    if "skflow+compile" in t:
        ratios += [f"{k}/skflow+compile {v / t['skflow+compile']:.2f}" for k, v in t.items()
                   if not k.startswith("skflow")]
    mm = row["matmul"]
    share = (f" | matmul share: skflow {mm['mm'] / t['skflow']:.0%}, skflow+compile {mm['mm+compile'] / base:.0%}"
             if mm else "")
    print(f"{row['engine']:6s} {row['size']:26s} {row['dtype']:7s} | " + " | ".join(parts))
    print(" " * 42 + "ratios: " + ", ".join(ratios) + share)
    if row["compile"]:
        print(" " * 42 + "first call (compilation): "
              + ", ".join(f"{k} {v:.1f} s" for k, v in row["compile"].items()))


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = ["torchdiffeq", "eager", "compiled"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, dname in zip(axes, DTYPES):
        sel = [r for r in rows if r["dtype"] == dname]
        labels = [f"{r['engine']}\n{r['size']}" for r in sel]
        width = 0.8 / len(peers)
        for j, peer in enumerate(peers):
            vals = [r["times"].get(peer, float("nan")) / r["times"].get("skflow+compile", r["times"]["skflow"])
                    for r in sel]
            ax.bar([i + j * width for i in range(len(sel))], vals, width, label=f"{peer} / skflow")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([i + width for i in range(len(sel))], labels, fontsize=7)
        ax.set_title(f"{dname}: peer step time / skflow step time (above 1: skflow faster)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--no-compiled-peer", action="store_true", help="skip the torch.compile peers")
    parser.add_argument("--engines", default="node,rkhs,varpro", help="comma-separated subset of node,rkhs,varpro")
    parser.add_argument("--estimator", action="store_true", help="the NODE through the public estimator's defaults")
    parser.add_argument("--cold", action="store_true", help="with --estimator: empty the package cache first")
    parser.add_argument("--device", default="cpu", help="with --estimator: 'cuda' times the same on a GPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    rounds = args.rounds or (3 if args.quick else 9)
    if args.quick:
        node_sizes, rkhs_sizes, vp_sizes = [(500, 64, 4, 16)], [(500, 128, 4, 5, 5)], [(1000, 64, 5)]
    else:
        node_sizes = [(1000, 256, 10, 16), (5000, 256, 10, 16), (20000, 128, 8, 16)]
        rkhs_sizes = [(2000, 512, 8, 10, 10), (10000, 256, 8, 10, 10)]
        vp_sizes = [(5000, 256, 10), (20000, 512, 10)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {rounds} interleaved rounds, medians")
    cp = not args.no_compiled_peer
    engines = args.engines.split(",")
    rows = []
    if args.estimator:
        sizes = [(500, 64, 4, 16)] if args.quick else [(1000, 256, 10, 16), (4000, 256, 10, 16), (1000, 256, 40, 16)]
        rows = bench_estimator(sizes, rounds, cp, args.cold, device=args.device)
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, f"bench_estimator_steps{'_quick' if args.quick else ''}.json"), "w") as fh:
            json.dump(rows, fh, indent=1)
        return
    for name, bench, sizes in [("node", bench_node, node_sizes), ("rkhs", bench_rkhs, rkhs_sizes),
                               ("varpro", bench_varpro, vp_sizes)]:
        if name in engines:
            rows += bench(sizes, rounds, cp)
    os.makedirs(RESULTS, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    with open(os.path.join(RESULTS, f"bench_peers{suffix}.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    plot(rows, os.path.join(RESULTS, f"bench_peers{suffix}.png"))


if __name__ == "__main__":
    main()

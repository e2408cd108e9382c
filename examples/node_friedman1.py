"""The default MeanFieldNODERegressor on make_friedman1, with its convergence diagnostics (SPEC section 1).

The model is a mean-field NODE with single-hidden-layer residuals (thesis Ch. I, II.5): ``S = 8`` layers of
``M = 256`` particles, ``sigma = cos``, Gaussian features, lifting and scaling with ``alpha = 4`` (II.6),
trained by the explicit Euler scheme of its Conditional-Wasserstein gradient flow, with early stopping on a
10% validation split. Data: ``make_friedman1(n_samples=2000, noise=0.5, random_state=0)``, the first 1000
points to train, the last 1000 to test, inputs standardised by a ``StandardScaler`` in a Pipeline.

Printed: test R^2 and the fitted diagnostics (P-L constant, kernel lambda_min at initialisation, COT
distance travelled, the convergence report). Saved: ``examples/figures/node_friedman1.png`` with

(a) the training risk against flow time (log scale) with the P-L bound ``R(0) exp(-m t)``, ``m = pl_constant_``,
    and the kernel-regime rate ``2 alpha^2 lambda_0 / N`` (finite width when ``M`` exceeds the kernel points,
    else the infinite-width ``exact_kernel_lambda_min_``);
(b) ``lambda_min`` of the layer kernels ``K1_k = Phi_k Phi_k^T / M`` at initialisation: the model's
    ``layer_kernel_lambda_min_`` (exactly 0, with a SingularKernelWarning, when ``M`` is below the number of
    kernel points) and, on a subsample of fewer than ``M`` points, the finite-width values against the
    closed-form infinite-width kernel ``exp(-rho^2 |x - y|^2 / 2) / 2``;
(c) the RMS particle displacement from the initialisation (``cot_displacement_curve_``, an upper bound of
    ``W2_COT(mu_t, mu_0)``) with the exact ``cot_distance_`` of the returned (best-validation) particles;
(d) the inner weights ``w`` at initialisation and at the end: histogram of ``|w|`` over all layers, and the first
    two coordinates of one layer;
(e) the outer weights ``|u|`` (0 at initialisation, the NODE starts as the identity);
(f) test predictions against the targets.

Run: ``python examples/node_friedman1.py [--quick] [--threads T]``
"""

import argparse
import os
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import make_friedman1  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skflow import MeanFieldNODERegressor  # noqa: E402
from skflow.diagnostics import shl_limit_kernel  # noqa: E402
from skflow.kernels import lambda_min  # noqa: E402

FIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: at most 100 iterations")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    return p.parse_args()


def subsample_layer_lambdas(model, Xs):
    """Per-layer lambda_min of K1_k at initialisation on the rows Xs (already scaled), and the closed form."""
    flow = model.flow_.to("cpu", torch.float64)
    X = torch.as_tensor(Xs, dtype=torch.float64)
    with torch.no_grad():
        Ks = flow.feature_kernels(X, initial=True)
    finite = np.array([lambda_min(K) for K in Ks])
    Z0 = torch.zeros(X.shape[0], flow.dim, dtype=torch.float64)
    Z0[:, : X.shape[1]] = X  # u = 0 at initialisation: every layer sees z(0) = (x, 0)
    exact = lambda_min(shl_limit_kernel(Z0, model.feature_init, model.feature_scale, model.nu))
    return finite, exact


def main():
    a = parse()
    if a.threads:
        torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    X, y = make_friedman1(n_samples=2000, noise=0.5, random_state=0)
    Xtr, Xte, ytr, yte = X[:1000], X[1000:], y[:1000], y[1000:]

    model = MeanFieldNODERegressor(random_state=a.seed, device=a.device)
    if a.quick:
        model.set_params(max_iter=100)
    pipe = make_pipeline(StandardScaler(), model)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.fit(Xtr, ytr)
    fit_time = time.perf_counter() - t0
    r2_tr, r2_te = r2_score(ytr, pipe.predict(Xtr)), r2_score(yte, pipe.predict(Xte))
    m = model
    rep = m.convergence_report_
    # the flow is trained on the training split left after the validation hold-out (as in BaseFlowEstimator)
    N = len(Xtr) - max(1, int(round(m.validation_fraction * len(Xtr)))) if m.early_stopping else len(Xtr)
    exact_rate = 2 * m.output_scale**2 * m.exact_kernel_lambda_min_ / N
    alpha = m.output_scale

    print(f"MeanFieldNODERegressor defaults: S={m.n_layers}, M={m.width}, alpha={alpha}, rho={m.feature_scale}, "
          f"tau={m.learning_rate}, activation={m.activation}, early_stopping={m.early_stopping}")
    print(f"make_friedman1(2000, noise=0.5): train {len(Xtr)} ({N} for the flow, the rest validation), "
          f"test {len(Xte)}")
    for w in caught:
        print(f"  warning: {w.category.__name__}: {str(w.message)[:150]}...")
    print(f"\n{'quantity':38s} {'value':>14s}")
    rows = [
        ("fit time (s)", fit_time),
        ("iterations (stop reason)", f"{m.n_iter_} ({m.stop_reason_})"),
        ("flow time reached", rep.get("flow_time")),
        ("train R^2", r2_tr),
        ("test R^2", r2_te),
        ("initial risk R(0)", rep.get("initial_risk")),
        ("final training risk", rep.get("final_risk")),
        ("best validation risk", getattr(m, "best_validation_risk_", float("nan"))),
        ("observed rate -log(R(T)/R(0))/T", rep.get("observed_rate")),
        ("P-L constant m (pl_constant_)", m.pl_constant_),
        ("P-L ratio at t = 0", m.pl_ratio_curve_[0]),
        ("P-L bound R(0)exp(-mt) holds", rep.get("pl_bound_holds")),
        ("kernel points (kernel_n_samples_)", m.kernel_n_samples_),
        ("lambda_0 finite width (kernel_lambda_min_)", m.kernel_lambda_min_),
        ("lambda_0 infinite width (exact_...)", m.exact_kernel_lambda_min_),
        ("kernel rate 2 alpha^2 lambda_0 / N", rep.get("kernel_rate")),
        ("same with exact lambda_0", exact_rate),
        ("W2_COT to init (cot_distance_)", m.cot_distance_),
        ("max RMS displacement", rep.get("max_displacement")),
        ("local P-L condition R0 < m r^2/4", rep.get("local_pl_condition")),
    ]
    for name, v in rows:
        s = f"{v:14.4g}" if isinstance(v, (float, np.floating)) else f"{str(v):>14s}"
        print(f"{name:38s} {s}")

    # --------------------------------------------------------------------------------------- figure
    t = m.flow_time_
    R = m.loss_curve_
    fig, ax = plt.subplots(2, 3, figsize=(16, 9.5))
    # (a) risk and bounds
    A = ax[0, 0]
    A.semilogy(t, R, lw=2, label="training risk R(t)")
    if "val_risk" in m.history_:
        A.semilogy(t, m.history_["val_risk"], lw=1, alpha=0.8, label="validation risk (after the step)")
    A.semilogy(t, R[0] * np.exp(-m.pl_constant_ * t), "k--", label=f"P-L bound R(0) exp(-m t), m={m.pl_constant_:.3g}")
    k_rate = rep.get("kernel_rate", 0.0)
    if k_rate > 0:
        A.semilogy(t, R[0] * np.exp(-k_rate * t), "g:", label=f"kernel rate 2a^2 l0/N = {k_rate:.3g}")
    if np.isfinite(exact_rate) and exact_rate > 0:
        A.semilogy(t, R[0] * np.exp(-exact_rate * t), "m:",
                   label=f"infinite-width kernel rate 2a^2 l0/N = {exact_rate:.2g}")
    A.set_ylim(min(R.min(), m.history_.get("val_risk", R).min()) / 2, R[0] * 1.5)
    A.set_xlabel("flow time t = tau x iteration")
    A.set_ylabel("risk (standardised targets)")
    A.set_title(f"(a) training risk; test R$^2$ = {r2_te:.3f}")
    A.legend(fontsize=8)
    # (b) lambda_min per layer at initialisation
    B = ax[0, 1]
    layers = np.arange(m.n_layers)
    Xsc = pipe[0].transform(Xtr)
    perm = np.random.RandomState(1).permutation(len(Xtr))
    table_b = []
    for n_sub, color in zip((16, 64, min(m.width // 2, 256)), ("C0", "C1", "C2")):
        fin, exact = subsample_layer_lambdas(m, Xsc[perm[:n_sub]])
        table_b.append((n_sub, fin.mean(), exact))
        B.semilogy(layers, np.maximum(fin, 1e-300), "o-", color=color,
                   label=f"{n_sub} points: finite width M={m.width}")
        B.axhline(exact, color=color, ls="--", lw=1, label=f"{n_sub} points: closed form (M = inf) {exact:.2e}")
    if m.kernel_lambda_min_ > 0:
        B.semilogy(layers, m.layer_kernel_lambda_min_, "s-", color="C3",
                   label=f"layer_kernel_lambda_min_ ({m.kernel_n_samples_} points)")
        B.axhline(m.exact_kernel_lambda_min_, color="C3", ls="--", lw=1,
                  label=f"exact_kernel_lambda_min_ ({m.kernel_n_samples_} points)")
        B.set_xlabel("layer k")
    else:
        B.set_xlabel(f"layer k\nfitted: layer_kernel_lambda_min_ = 0 on {m.kernel_n_samples_} points (M={m.width} < "
                     f"{m.kernel_n_samples_}: K1 singular),\nexact_kernel_lambda_min_ = "
                     f"{m.exact_kernel_lambda_min_:.2e} on {m.kernel_n_samples_} points", fontsize=8)
    B.set_ylabel("lambda_min(K1_k) at initialisation")
    B.set_title("(b) layer kernels at initialisation (seeded subsamples)")
    B.legend(fontsize=7, loc="lower right", ncol=1)
    # (c) COT displacement
    C = ax[0, 2]
    C.plot(t, m.cot_displacement_curve_, label="RMS displacement (upper bound of W2_COT)")
    if "val_risk" in m.history_ and m.early_stopping:
        ib = int(np.argmin(m.history_["val_risk"]))
        t_best = t[ib] + m.learning_rate  # validation risk is measured after the step of iteration ib
        C.axvline(t_best, color="gray", ls=":", label="best validation (returned particles)")
    else:
        t_best = t[-1] + m.learning_rate
    C.plot([t_best], [m.cot_distance_], "r*", ms=14, label=f"exact W2_COT (cot_distance_) = {m.cot_distance_:.3g}")
    C.set_xlabel("flow time t")
    C.set_ylabel("distance to the initialisation")
    C.set_title("(c) Conditional OT distance travelled")
    C.legend(fontsize=8)
    # (d) inner weights
    W0 = m.flow_.W0.detach().cpu().double().numpy()
    W1 = m.W_
    D1 = ax[1, 0]
    n0, n1 = np.linalg.norm(W0, axis=-1).ravel(), np.linalg.norm(W1, axis=-1).ravel()
    bins = np.linspace(0, max(n0.max(), n1.max()), 50)
    D1.hist(n0, bins=bins, alpha=0.5, label="initial |w|")
    D1.hist(n1, bins=bins, histtype="step", lw=2, label="final |w|")
    D1.set_xlabel("|w| (all layers)")
    D1.set_title(f"(d) inner weights: mean |w - w0| = {np.linalg.norm(W1 - W0, axis=-1).mean():.3g}")
    ins = D1.inset_axes([0.62, 0.45, 0.36, 0.5])
    k = 0
    ins.scatter(W0[k, :, 0], W0[k, :, 1], s=4, alpha=0.6, label="init")
    ins.scatter(W1[k, :, 0], W1[k, :, 1], s=4, alpha=0.6, label="final")
    ins.set_title(f"layer {k}: (w_1, w_2)", fontsize=7)
    ins.tick_params(labelsize=6)
    ins.legend(fontsize=6, markerscale=2)
    D1.legend(fontsize=8, loc="upper left")
    # (e) outer weights
    E = ax[1, 1]
    un = np.linalg.norm(m.U_, axis=-1)
    for k in range(m.n_layers):
        E.hist(un[k], bins=40, histtype="step", label=f"layer {k}")
    E.set_xlabel("|u| at the end (0 at initialisation)")
    E.set_title("(e) outer weights")
    E.legend(fontsize=7, ncol=2)
    # (f) predictions
    F = ax[1, 2]
    F.scatter(yte, pipe.predict(Xte), s=5, alpha=0.5)
    lo, hi = yte.min(), yte.max()
    F.plot([lo, hi], [lo, hi], "k--", lw=1)
    F.set_xlabel("test target")
    F.set_ylabel("prediction")
    F.set_title(f"(f) test set, R$^2$ = {r2_te:.3f}")
    fig.suptitle(f"MeanFieldNODERegressor defaults on make_friedman1 (S={m.n_layers}, M={m.width}, "
                 f"alpha={alpha}, tau={m.learning_rate}; {m.n_iter_} iterations, {m.stop_reason_})")
    fig.tight_layout()
    os.makedirs(FIG_DIR, exist_ok=True)
    path = os.path.join(FIG_DIR, "node_friedman1.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    head_b = f"mean_k lambda_min(K1_k), M={m.width}"
    print(f"\n{'kernel points':>13s} {head_b:>30s} {'closed form (M = inf)':>22s}")
    for n_sub, fin_mean, exact in table_b:
        print(f"{n_sub:13d} {fin_mean:30.3e} {exact:22.3e}")
    print(f"\nsaved {path}  (total {time.perf_counter() - t_start:.0f}s)")


if __name__ == "__main__":
    main()

"""Time-to-accuracy at scale: skflow's gradient-flow estimators against kernel and MLP peers, N = 1e3 ... 1e5.

Question: how long does each estimator need to reach a given test score, how much memory does it take on top
of its data, and from which training-set size N (if any) is an skflow estimator the fastest to the target?

Datasets (one fixed test set of 2000 rows each; the training sets of the sizes are nested prefixes of one pool)
---------------------------------------------------------------------------------------------------------------
* ``friedman1``: ``make_friedman1(n_samples=max(N) + 2000, n_features=10, noise=1.0, random_state=0)``; the
  last 2000 rows are the test set. Score: R^2.
* ``mnist1d``: ``mnist1d.data.make_dataset`` at ``get_dataset_args()`` (seed 42) with
  ``num_samples = max(N) + 2000``, its train and test parts concatenated (the rows are already shuffled); the
  last 2000 rows are the test set. Score: accuracy (10 classes, 40 features). The data set is generated
  locally (about a minute for 1e5 rows) and cached in ``$TMPDIR/skflow_tta_cache``.

Seed ``s`` draws the training rows: ``s = 0`` takes the first N rows of the pool, ``s > 0`` a random N-subset
(``default_rng(s)``); it also seeds every stochastic estimator (``random_state=s``). X is standardised with
the training rows' statistics (``StandardScaler``), and so is y for friedman1 (R^2 does not change, and the
RBF kernel ridges need no intercept).

Contenders
----------
friedman1 (regression): ``MeanFieldNODERegressor`` and ``VarProSHLRegressor`` at their defaults (only
``compile=False``, ``random_state``; and ``warm_start`` / ``max_iter`` for the chunked protocol below);
``KernelRidge(kernel='rbf')``; ``Nystroem(n_components=min(1000, N))`` + ``Ridge``; ``MLPRegressor()`` at its
defaults (Adam, 100 hidden units, 200 epochs, tol 1e-4 / 10 epochs).
mnist1d (classification): ``RKHSNODEClassifier`` at its defaults (100 epochs of minibatch 128, ``compile=False``);
``SVC(kernel='rbf')``; ``Nystroem(n_components=min(1000, N))`` + ``RidgeClassifier``; ``MLPClassifier()``.

The kernel peers are tuned, not at their defaults: ``gamma`` and ``alpha`` (KernelRidge, shared by
Nystroem + Ridge, whose primal ridge has the same objective), ``C`` and ``gamma`` (SVC), and ``gamma`` and
``alpha`` (Nystroem + RidgeClassifier) are chosen once per data set by ``GridSearchCV`` (3-fold) on a 1000-row
subsample of the training pool (grids in :func:`tune_peers`), and are kept for every N. The search time is
printed and stored but *not* added to the peers' times (which favours the peers: the skflow estimators and the
MLPs run at defaults tuned across data sets once and for all). ``KernelRidge`` and ``SVC`` are skipped above
N = 2e4: a dense N x N float64 matrix is 7.2 GB at 3e4 (KernelRidge holds it, and a copy for the solve); SVC
does not store it, but libsvm's time grows like N^2 or faster.

"Time to reach a score"
-----------------------
Every contender's test score is recorded against its training time:

* skflow estimators: ``warm_start=True`` and chunks of ``max_iter`` that grow geometrically (1, then about
  x1.5 each time: 1, 1, 2, 3, 4, 6, 9, ... iterations), the test score after each chunk. The time of a
  checkpoint is the training time of all chunks up to it *without* the end-of-fit diagnostics of each chunk
  (kernel eigenvalues, W2 distances: timed by wrapping the estimator's ``_finalize_fit`` in the child
  process), *plus* one diagnostics cost (the last chunk's): what a single ``fit`` with that ``max_iter``
  would cost. The estimators' own stopping rules are applied to the accumulated ``history_`` (early stopping
  on the validation risk for NODE and VarPro, ``tol`` / ``n_iter_no_change``; RKHSNODE runs its fixed budget
  of ``max_iter = 100`` epochs). Two differences from one long fit, both small: with ``early_stopping`` each
  chunk ends at its best-validation parameters (a chunk that overshoots is rolled back), and RKHSNODE's
  minibatch order restarts from the same seeded permutation at each chunk (momentum is kept).
* MLPs: ``partial_fit``, one epoch per call (the optimiser state is kept, unlike ``warm_start``), the test
  score after every epoch, stopped by scikit-learn's own rule (training loss not improving by ``tol = 1e-4``
  for more than ``n_iter_no_change = 10`` epochs) or ``max_iter = 200`` epochs.
* KernelRidge, Nystroem + Ridge(Classifier), SVC: one point (fit time, test score).

Time to target = the training time at the first checkpoint whose test score reaches the target ('-' if
none does); the targets (R^2 = 0.90 on friedman1, accuracy = 0.60 on MNIST-1D by default, ``--targets``) are
scores the tuned kernel peers reach at moderate N. Evaluating the test score is not timed. Times are
wall-clock (``perf_counter``) and, in a second table, the process CPU time (``process_time``), which is less
sensitive to other processes on a shared machine; everything runs on one thread (``torch.set_num_threads(1)``,
``threadpool_limits(1)`` and ``OMP/OPENBLAS/MKL_NUM_THREADS=1``).

Peak memory: each (contender, N, seed) runs in its own child process (``multiprocessing``, forked from a parent
that holds the data pools), so that peaks never mix; the child reports the increase of its peak resident set
size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over its value just before fitting (after the data
split), and the peak of ``tracemalloc`` over the fit (Python and NumPy allocations only: torch's allocator is
not traced). The test-set evaluations happen inside the child and are part of the peak (2000 rows: small).

Budget and trimming (the full mode has to finish in about 40 minutes on a 2-core machine)
-----------------------------------------------------------------------------------------
* Each iterative run (skflow, MLP) has a budget of training time (the accounted wall time above, so the
  evaluations and the per-chunk diagnostics do not eat it) that depends on N: 60 s up to N = 3e3, 75 s at 1e4,
  100 s at 3e4 and 150 s at 1e5 (``--quick``: 6 s; ``--budget-scale`` multiplies them). The next chunk is
  sized so as to end within the budget (from the measured time per iteration); a run that stops on it says
  ``budget`` in the iterations table. The budget trims MeanFieldNODE from N = 1e3 on (about 0.2-0.5 s per
  full-batch float64 step at N = 1e4 and 4-8 s at 1e5 on one loaded core, against a default ``max_iter`` of
  2000), RKHSNODE (100 epochs of minibatch 128: about 0.2 s per epoch at N = 1e3, 15-30 s at 1e5), VarPro at
  N >= 3e4 and the MLPs at N >= 3e4: their time-to-target is then "within the budget", and their final score
  is the score at the budget, not at convergence. The first checkpoint is after one step / epoch, so a time
  to target is never below the time of one step (RKHSNODE and the MLPs reach 0.6 on MNIST-1D within their
  first epoch at N = 1e5).
* KernelRidge and SVC are skipped above N = 2e4 (see above).
* Seeds: 0 and 1 at N = 1e3 (the table shows their mean; a time to target only when both seeds reach it),
  seed 0 above.
* ``compile=False``: ``torch.compile``'s fused kernels gave 10-20 % per step on this CPU but cost 10-30 s to
  build in every fresh process.

The contenders are interleaved: for each N (ascending) the runs alternate between the data sets and the
contender order rotates with N, so that a change of the machine's load does not fall on one contender only.

Outputs: the tables (rows N, columns contenders; cells: time to target (s) / final score / peak RSS increase
(MB)); the CPU-time table; the iterations table; the smallest N from which an skflow estimator is the fastest to
the target at every larger N of the grid (or 'never in this range'); ``benchmarks/results/
bench_time_to_accuracy.{json,png}`` (``_quick`` with ``--quick``): the raw curves and numbers, and a figure with
time to target against N (log-log), peak memory against N, and the score-against-time curves at the largest N.

Run::

    python benchmarks/bench_time_to_accuracy.py --quick      # N in {500, 1000}, about a minute
    python benchmarks/bench_time_to_accuracy.py              # N in {1e3, 3e3, 1e4, 3e4, 1e5}, about 35-40 min
                                                             # (2 cores shared with other jobs)
    python benchmarks/bench_time_to_accuracy.py --from-json benchmarks/results/bench_time_to_accuracy.json \\
        --targets friedman1=0.93 mnist1d=0.7                  # re-tabulate stored curves for other targets
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
             "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import make_friedman1  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.kernel_approximation import Nystroem  # noqa: E402
from sklearn.kernel_ridge import KernelRidge  # noqa: E402
from sklearn.linear_model import Ridge, RidgeClassifier  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # the environment variables above already pin BLAS / OpenMP to one thread
    threadpool_limits = None

import skflow  # noqa: E402
from skflow import MeanFieldNODERegressor, RKHSNODEClassifier, VarProSHLRegressor  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
N_TEST = 2000
DENSE_LIMIT = 20_000  # KernelRidge / SVC above this N: skipped
DEFAULT_TARGETS = {"friedman1": 0.90, "mnist1d": 0.60}
CONTENDERS = {
    "friedman1": ["MeanFieldNODE", "VarPro", "KernelRidge", "Nystroem+Ridge", "MLP"],
    "mnist1d": ["RKHSNODE", "SVC", "Nystroem+RidgeClf", "MLP"],
}
SKFLOW = {"MeanFieldNODE", "VarPro", "RKHSNODE"}
DENSE = {"KernelRidge", "SVC"}
ITERATIVE = SKFLOW | {"MLP"}

# data pools, filled by the parent before forking (the children inherit them)
POOLS = {}


def _pin_threads():
    torch.set_num_threads(1)
    if threadpool_limits is not None:
        threadpool_limits(limits=1)


def _clock():
    return time.perf_counter(), time.process_time()


# ------------------------------------------------------------------------------------------------- datasets
def make_pools(max_n):
    """dataset -> (X_pool, y_pool, X_test, y_test); the training rows of every run are drawn from the pool."""
    t0 = time.perf_counter()
    X, y = make_friedman1(n_samples=max_n + N_TEST, n_features=10, noise=1.0, random_state=0)
    POOLS["friedman1"] = (X[:max_n], y[:max_n], X[max_n:], y[max_n:])
    print(f"friedman1: {max_n} + {N_TEST} rows x 10 features ({time.perf_counter() - t0:.1f} s)", flush=True)
    t0 = time.perf_counter()
    X, y = load_mnist1d(max_n + N_TEST)
    POOLS["mnist1d"] = (X[:max_n], y[:max_n], X[max_n:], y[max_n:])
    print(f"mnist1d:   {max_n} + {N_TEST} rows x {X.shape[1]} features, {len(np.unique(y))} classes "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)


def load_mnist1d(n):
    """``n`` MNIST-1D rows (get_dataset_args() with num_samples = n), cached on disk."""
    n = int(math.ceil(n / 10) * 10)  # make_dataset draws num_samples // 10 rows per class
    cache = os.path.join(tempfile.gettempdir(), "skflow_tta_cache", f"mnist1d_{n}_seed42.npz")
    if os.path.exists(cache):
        with np.load(cache) as f:
            return f["X"], f["y"]
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = make_dataset(args)
    X = np.concatenate([d["x"], d["x_test"]]).astype(np.float64)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez(cache, X=X, y=y)
    return X, y


def training_rows(pool_size, n, seed):
    if seed == 0:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(pool_size, size=n, replace=False))


def split(dataset, n, seed):
    """Standardised (Xtr, ytr, Xte, yte) of a run."""
    Xp, yp, Xte, yte = POOLS[dataset]
    idx = training_rows(len(yp), n, seed)
    Xtr, ytr = Xp[idx], yp[idx]
    sc = StandardScaler().fit(Xtr)
    Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
    if dataset == "friedman1":
        mu, sd = ytr.mean(), ytr.std()
        ytr, yte = (ytr - mu) / sd, (yte - mu) / sd
    return np.ascontiguousarray(Xtr), ytr, np.ascontiguousarray(Xte), yte


# -------------------------------------------------------------------------------------------------- tuning
def tune_peers(quick):
    """Hyper-parameters of the kernel peers: GridSearchCV (3-fold) on a 1000-row subsample of each pool."""
    out = {}
    n_sub = 1000
    if quick:
        krr_grid = {"alpha": [1e-2, 1e-1], "gamma": [0.03, 0.1]}
        svc_grid = {"C": [1.0, 10.0], "gamma": [0.01, 0.025]}
        nys_grid = {"nystroem__gamma": [0.01, 0.025], "ridgeclassifier__alpha": [0.1, 1.0]}
    else:
        krr_grid = {"alpha": [1e-3, 1e-2, 1e-1, 1.0], "gamma": [0.01, 0.03, 0.1, 0.3]}
        svc_grid = {"C": [1.0, 10.0, 100.0], "gamma": [0.005, 0.01, 0.025, 0.05]}
        nys_grid = {"nystroem__gamma": [0.005, 0.01, 0.025, 0.05], "ridgeclassifier__alpha": [0.01, 0.1, 1.0, 10.0]}
    warnings.filterwarnings("ignore", message="n_components > n_samples")  # Nystroem in the 667-row CV folds
    Xtr, ytr, _, _ = split("friedman1", n_sub, 0)
    t0 = time.perf_counter()
    g = GridSearchCV(KernelRidge(kernel="rbf"), krr_grid, cv=3).fit(Xtr, ytr)
    out["friedman1"] = {"KernelRidge": dict(g.best_params_), "cv_score": float(g.best_score_),
                        "search_s": time.perf_counter() - t0}
    Xtr, ytr, _, _ = split("mnist1d", n_sub, 0)
    t0 = time.perf_counter()
    g = GridSearchCV(SVC(kernel="rbf"), svc_grid, cv=3).fit(Xtr, ytr)
    svc = {"params": dict(g.best_params_), "cv_score": float(g.best_score_), "search_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    pipe = make_pipeline(Nystroem(kernel="rbf", n_components=n_sub, random_state=0), RidgeClassifier())
    g = GridSearchCV(pipe, nys_grid, cv=3).fit(Xtr, ytr)
    nys = {"params": {"gamma": g.best_params_["nystroem__gamma"], "alpha": g.best_params_["ridgeclassifier__alpha"]},
           "cv_score": float(g.best_score_), "search_s": time.perf_counter() - t0}
    out["mnist1d"] = {"SVC": svc["params"], "Nystroem+RidgeClf": nys["params"], "SVC_cv_score": svc["cv_score"],
                      "Nystroem_cv_score": nys["cv_score"], "search_s": svc["search_s"] + nys["search_s"]}
    return out


# ------------------------------------------------------------------------------------------------- models
def make_model(name, dataset, seed, n, hp):
    if name == "MeanFieldNODE":
        return MeanFieldNODERegressor(random_state=seed, compile=False)
    if name == "VarPro":
        return VarProSHLRegressor(random_state=seed, compile=False)
    if name == "RKHSNODE":
        return RKHSNODEClassifier(random_state=seed, compile=False)
    if name == "MLP":
        return MLPRegressor(random_state=seed) if dataset == "friedman1" else MLPClassifier(random_state=seed)
    if name == "KernelRidge":
        return KernelRidge(kernel="rbf", **hp["friedman1"]["KernelRidge"])
    if name == "Nystroem+Ridge":
        p = hp["friedman1"]["KernelRidge"]
        return make_pipeline(Nystroem(kernel="rbf", gamma=p["gamma"], n_components=min(1000, n), random_state=seed),
                             Ridge(alpha=p["alpha"]))
    if name == "SVC":
        return SVC(kernel="rbf", **hp["mnist1d"]["SVC"])
    if name == "Nystroem+RidgeClf":
        p = hp["mnist1d"]["Nystroem+RidgeClf"]
        return make_pipeline(Nystroem(kernel="rbf", gamma=p["gamma"], n_components=min(1000, n), random_state=seed),
                             RidgeClassifier(alpha=p["alpha"]))
    raise ValueError(name)


def _tol_rule_fires(series, tol, n_no_change):
    """scikit-learn/skflow's rule on a whole monitored series: ``n_no_change`` consecutive relative non-decreases."""
    if tol <= 0:
        return False
    best, count = math.inf, 0
    for v in series:
        count = count + 1 if v > best - tol * abs(best) else 0
        best = min(best, v)
        if count >= n_no_change:
            return True
    return False


def run_skflow(est, Xtr, ytr, Xte, yte, budget, caught):
    """Chunked warm-start fits; returns (curve, info). See the module docstring for the time accounting."""
    cls = type(est)
    original = cls._finalize_fit
    diag = {"wall": 0.0, "cpu": 0.0}

    def timed_finalize(self, *args, **kwargs):  # this child process only
        w0, c0 = _clock()
        try:
            return original(self, *args, **kwargs)
        finally:
            w1, c1 = _clock()
            diag["wall"] += w1 - w0
            diag["cpu"] += c1 - c0

    cls._finalize_fit = timed_finalize
    max_iter = est.max_iter
    est.set_params(warm_start=True)
    curve, done, tw, tc, stop = [], 0, 0.0, 0.0, "max_iter"
    per_iter, diag_last, chunks = None, 0.0, 0
    while done < max_iter:
        want = max(1, int(math.ceil(done * 1.5)) - done)
        chunk = min(want, max_iter - done)
        if per_iter is not None:
            left = budget - tw - diag_last  # the budget is on the accounted training time
            chunk = min(chunk, int(left / per_iter))
            if chunk < 1:
                stop = "budget"
                break
        est.set_params(max_iter=chunk)
        diag["wall"] = diag["cpu"] = 0.0
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always")
            w0, c0 = _clock()
            est.fit(Xtr, ytr)
            w1, c1 = _clock()
        caught.extend(w for w in ws if not issubclass(w.category, ConvergenceWarning))  # chunk ends: expected
        ran = est.n_iter_ - done
        tw += (w1 - w0) - diag["wall"]
        tc += (c1 - c0) - diag["cpu"]
        diag_last = diag["wall"]
        chunks += 1
        if ran <= 0:
            stop = est.stop_reason_
            break
        per_iter = max(((w1 - w0) - diag["wall"]) / ran, 1e-6)
        done = est.n_iter_
        curve.append({"iter": done, "wall": tw + diag["wall"], "cpu": tc + diag["cpu"],
                      "score": float(est.score(Xte, yte))})
        if est.stop_reason_ in ("converged", "diverged", "interrupted"):
            stop = est.stop_reason_
            break
        key = "val_risk" if est.early_stopping else "risk"
        if _tol_rule_fires(est.history_.get(key, []), est.tol, est.n_iter_no_change):
            stop = "converged"
            break
    return curve, {"n_iter": int(done), "max_iter": int(max_iter), "stop": stop, "chunks": chunks,
                   "diagnostics_s": diag_last}


def run_mlp(est, Xtr, ytr, Xte, yte, budget, caught, classes=None):
    """``partial_fit`` epochs with scikit-learn's stopping rule (training loss, absolute tol, n_iter_no_change)."""
    curve, tw, tc, stop = [], 0.0, 0.0, "max_iter"
    best, count, epochs, per_epoch = math.inf, 0, 0, None
    while epochs < est.max_iter:
        if per_epoch is not None and tw + per_epoch > budget:
            stop = "budget"
            break
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always")
            w0, c0 = _clock()
            if classes is not None:
                est.partial_fit(Xtr, ytr, classes=classes)
            else:
                est.partial_fit(Xtr, ytr)
            w1, c1 = _clock()
        caught.extend(ws)
        tw += w1 - w0
        tc += c1 - c0
        per_epoch = w1 - w0
        epochs += 1
        curve.append({"iter": epochs, "wall": tw, "cpu": tc, "score": float(est.score(Xte, yte))})
        loss = est.loss_curve_[-1]
        count = count + 1 if loss > best - est.tol else 0
        best = min(best, loss)
        if count > est.n_iter_no_change:
            stop = "converged"
            break
    return curve, {"n_iter": epochs, "max_iter": int(est.max_iter), "stop": stop}


def run_closed(est, Xtr, ytr, Xte, yte, caught):
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        w0, c0 = _clock()
        est.fit(Xtr, ytr)
        w1, c1 = _clock()
    caught.extend(ws)
    return [{"iter": 1, "wall": w1 - w0, "cpu": c1 - c0, "score": float(est.score(Xte, yte))}], {"stop": "closed-form"}


def child(job, conn):
    """One (contender, dataset, N, seed) in its own process; sends back its curve and memory numbers."""
    try:
        _pin_threads()
        Xtr, ytr, Xte, yte = split(job["dataset"], job["n"], job["seed"])
        est = make_model(job["name"], job["dataset"], job["seed"], job["n"], job["hp"])
        gc.collect()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if job["tracemalloc"]:
            tracemalloc.start()
        caught = []
        if job["name"] in SKFLOW:
            curve, info = run_skflow(est, Xtr, ytr, Xte, yte, job["budget"], caught)
        elif job["name"] == "MLP":
            classes = np.unique(ytr) if job["dataset"] == "mnist1d" else None
            curve, info = run_mlp(est, Xtr, ytr, Xte, yte, job["budget"], caught, classes)
        else:
            curve, info = run_closed(est, Xtr, ytr, Xte, yte, caught)
        tm_peak = tracemalloc.get_traced_memory()[1] / 2**20 if job["tracemalloc"] else None
        if job["tracemalloc"]:
            tracemalloc.stop()
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn.send({"ok": True, "curve": curve, "info": info, "rss_before_mb": rss0, "rss_peak_mb": rss1,
                   "peak_mb": rss1 - rss0, "tracemalloc_peak_mb": tm_peak,
                   "warnings": dict(Counter(w.category.__name__ for w in caught)),
                   "warning_messages": sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught})[:5]})
    except BaseException as exc:  # noqa: BLE001 - report any failure to the parent
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]})
    finally:
        conn.close()


def run_job(job, ctx):
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child, args=(job, child_conn))
    t0 = time.perf_counter()
    proc.start()
    child_conn.close()
    limit = (job["budget"] if job["name"] in ITERATIVE else 600) * 2 + 120
    res = None
    if parent_conn.poll(limit):
        try:
            res = parent_conn.recv()
        except EOFError:
            res = None
    proc.join(30)
    if proc.is_alive():  # our own child, by its pid
        proc.kill()
        proc.join()
    if res is None:
        res = {"ok": False, "error": f"no result (timeout after {limit:.0f} s or crash, exit code {proc.exitcode})"}
    res["process_wall_s"] = time.perf_counter() - t0
    return res


# -------------------------------------------------------------------------------------------------- report
def time_to(curve, target, clock="wall"):
    for p in curve:
        if p["score"] >= target:
            return p[clock]
    return None


def aggregate(runs, dataset, name, n, target):
    """Mean over seeds: time to target (only if every seed reached it), final score, peak MB; or a skip note."""
    rs = [r for r in runs if r["dataset"] == dataset and r["name"] == name and r["n"] == n]
    if not rs:
        return None
    if any(r.get("skipped") for r in rs):
        return {"skipped": rs[0]["skipped"]}
    ok = [r for r in rs if r["ok"]]
    if not ok:
        return {"failed": rs[0].get("error", "failed")}
    tw = [time_to(r["curve"], target, "wall") for r in ok]
    tc = [time_to(r["curve"], target, "cpu") for r in ok]
    reached = sum(t is not None for t in tw)
    return {
        "t_wall": float(np.mean(tw)) if reached == len(ok) else None,
        "t_cpu": float(np.mean(tc)) if reached == len(ok) else None,
        "reached": reached, "n_seeds": len(ok),
        "score": float(np.mean([r["curve"][-1]["score"] for r in ok if r["curve"]])) if any(r["curve"] for r in ok)
        else float("nan"),
        "peak_mb": float(np.mean([r["peak_mb"] for r in ok])),
        "tracemalloc_mb": (float(np.mean([r["tracemalloc_peak_mb"] for r in ok]))
                           if all(r.get("tracemalloc_peak_mb") is not None for r in ok) else None),
        "total_wall": float(np.mean([r["curve"][-1]["wall"] for r in ok if r["curve"]] or [float("nan")])),
        "iters": iters_text(ok[0]["info"]),
    }


def iters_text(info):
    return f"{info['n_iter']}/{info['max_iter']} {info['stop']}" if "n_iter" in info else info["stop"]


def fmt_t(t):
    return "-" if t is None else (f"{t:.3g}" if t < 100 else f"{t:.0f}")


def cell(a, kind="main"):
    if a is None:
        return "n/a"
    if "skipped" in a:
        return "skipped"
    if "failed" in a:
        return "FAILED"
    if kind == "cpu":
        return fmt_t(a["t_cpu"]) + (f" ({a['reached']}/{a['n_seeds']})" if 0 < a["reached"] < a["n_seeds"] else "")
    if kind == "iters":
        return a["iters"]
    seeds = f" ({a['reached']}/{a['n_seeds']})" if 0 < a["reached"] < a["n_seeds"] else ""
    return f"{fmt_t(a['t_wall'])}{seeds} / {a['score']:.3f} / {a['peak_mb']:.0f}"


def print_table(title, sizes, contenders, cells):
    widths = [max(len("N"), 7)] + [max(len(c), max(len(cells[(n, c)]) for n in sizes)) for c in contenders]
    print(title)
    print("  " + " | ".join(h.ljust(w) for h, w in zip(["N"] + contenders, widths)))
    print("  " + "-+-".join("-" * w for w in widths))
    for n in sizes:
        row = [f"{n:.0e}".replace("e+0", "e") if n >= 1e4 else str(n)] + [cells[(n, c)] for c in contenders]
        print("  " + " | ".join(v.ljust(w) for v, w in zip(row, widths)))


def winners(runs, dataset, sizes, target, clock):
    """Per N: the contender fastest to the target (None if none reached it); and the N from which skflow wins."""
    per_n = {}
    for n in sizes:
        best = None
        for c in CONTENDERS[dataset]:
            a = aggregate(runs, dataset, c, n, target)
            t = None if a is None or "t_wall" not in a else a["t_" + clock]
            if t is not None and (best is None or t < best[1]):
                best = (c, t)
        per_n[n] = best
    from_n = None
    for n in reversed(sizes):
        if per_n[n] is not None and per_n[n][0] in SKFLOW:
            from_n = n
        else:
            break
    return per_n, from_n


def report(runs, sizes, targets, hp, dense_notes):
    summary = {}
    for ds in CONTENDERS:
        target = targets[ds]
        metric = "R^2" if ds == "friedman1" else "accuracy"
        cs = CONTENDERS[ds]
        print(f"\n=== {ds}: target test {metric} = {target:g} ===")
        agg = {(n, c): aggregate(runs, ds, c, n, target) for n in sizes for c in cs}
        print_table("wall-clock time to target (s) / final test score / peak RSS increase (MB)   "
                    "('-': target not reached; (k/2): reached by k of 2 seeds)", sizes, cs,
                    {k: cell(v) for k, v in agg.items()})
        print_table("\nCPU time to target (s) (process_time: less sensitive to the other processes)", sizes, cs,
                    {k: cell(v, "cpu") for k, v in agg.items()})
        print_table("\niterations run / max_iter and stop reason (skflow: steps or epochs; MLP: epochs)", sizes, cs,
                    {k: cell(v, "iters") for k, v in agg.items()})
        tm = {k: ("-" if v is None or v.get("tracemalloc_mb") is None else f"{v['tracemalloc_mb']:.0f}")
              for k, v in agg.items()}
        print_table("\ntracemalloc peak during the fit (MB; Python/NumPy allocations only, torch not traced)", sizes, cs,
                    tm)
        for note in dense_notes.get(ds, []):
            print("  " + note)
        out = {"target": target, "metric": metric}
        for clock in ("wall", "cpu"):
            per_n, from_n = winners(runs, ds, sizes, target, clock)
            txt = ", ".join(f"{n:g}: {w[0] if w else 'nobody'}" for n, w in per_n.items())
            verdict = (f"from N = {from_n:g} on" if from_n is not None else "never in this range")
            wins = [n for n, w in per_n.items() if w and w[0] in SKFLOW]
            if from_n is None and wins:
                verdict += f" (but fastest at N = {', '.join(f'{n:g}' for n in wins)})"
            print(f"fastest to the target ({clock} time): {txt}\n  -> an skflow estimator is the fastest {verdict}")
            out[clock] = {"fastest": {str(n): (w[0] if w else None) for n, w in per_n.items()},
                          "skflow_wins_from": from_n, "skflow_fastest_at": wins}
        out["cells"] = {f"{n}|{c}": v for (n, c), v in agg.items()}
        summary[ds] = out
    return summary


def plot(runs, sizes, targets, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no figure")
        return
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    for row, ds in enumerate(CONTENDERS):
        target = targets[ds]
        nmax = max(n for n in sizes if any(r["dataset"] == ds and r["n"] == n and r.get("ok") for r in runs))
        for c in CONTENDERS[ds]:
            style = "-" if c in SKFLOW else "--"
            aggs = [(n, aggregate(runs, ds, c, n, target)) for n in sizes]
            pts = [(n, a["t_wall"]) for n, a in aggs if a and a.get("t_wall") is not None]
            if pts:
                axes[row, 0].loglog(*zip(*pts), style, marker="o", label=c)
            mem = [(n, max(a["peak_mb"], 0.5)) for n, a in aggs if a and "peak_mb" in a]
            if mem:
                axes[row, 1].loglog(*zip(*mem), style, marker="o", label=c)
            for r in runs:
                if r["dataset"] == ds and r["name"] == c and r["n"] == nmax and r.get("ok") and r["seed"] == 0:
                    xs = [max(p["wall"], 1e-3) for p in r["curve"]]
                    axes[row, 2].semilogx(xs, [p["score"] for p in r["curve"]], style, marker="." if len(xs) > 1
                                          else "o", label=c)
        metric = "R^2" if ds == "friedman1" else "accuracy"
        axes[row, 0].set(xlabel="N (training rows)", ylabel=f"wall time to test {metric} >= {target:g} (s)",
                         title=f"{ds}: time to target (missing: never reached / skipped)")
        axes[row, 1].set(xlabel="N (training rows)", ylabel="peak RSS increase during fit (MB)",
                         title=f"{ds}: peak memory")
        axes[row, 2].axhline(target, color="grey", lw=0.8)
        axes[row, 2].set(xlabel="training wall time (s)", ylabel=f"test {metric}", title=f"{ds}: N = {nmax:g}, seed 0",
                         ylim=(max(0.0, target - 0.4), None))
        for ax in axes[row]:
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


# ---------------------------------------------------------------------------------------------------- main
def budget_for(n, quick, scale=1.0):
    if quick:
        return 6.0 * scale
    return scale * (60.0 if n <= 3000 else 75.0 if n <= 10_000 else 100.0 if n <= 30_000 else 150.0)


def parse_targets(items):
    targets = dict(DEFAULT_TARGETS)
    for it in items or []:
        k, v = it.split("=")
        targets[k] = float(v)
    return targets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N in {500, 1000}, 6 s budgets, small grids")
    parser.add_argument("--sizes", type=float, nargs="+", help="override the training sizes")
    parser.add_argument("--targets", nargs="+", help="e.g. friedman1=0.9 mnist1d=0.6")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply the training-time budgets")
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--from-json", help="re-tabulate a stored result (no fitting)")
    args = parser.parse_args()
    targets = parse_targets(args.targets)

    if args.from_json:
        with open(args.from_json) as fh:
            stored = json.load(fh)
        sizes = stored["config"]["sizes"]
        report(stored["runs"], sizes, targets, stored["config"]["hyperparameters"], stored.get("dense_notes", {}))
        return

    t_all = time.perf_counter()
    _pin_threads()
    sizes = [int(n) for n in (args.sizes or ([500, 1000] if args.quick else [1000, 3000, 10_000, 30_000, 100_000]))]
    seeds_for = (lambda n: [0]) if args.quick else (lambda n: [0, 1] if n <= 1000 else [0])
    load0 = os.getloadavg()
    print(f"skflow {skflow.__version__}, scikit-learn {sklearn.__version__}, torch {torch.__version__}, "
          f"numpy {np.__version__}, Python {platform.python_version()}; {os.cpu_count()} CPU(s), "
          f"load average at start {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f} (1/5/15 min); one thread per process")
    print(f"sizes {sizes}; seeds: {'0' if args.quick else '0 and 1 at N <= 1000, 0 above'}; test set {N_TEST} rows; "
          f"targets {targets}")
    make_pools(max(sizes))
    t0 = time.perf_counter()
    hp = tune_peers(args.quick)
    print(f"peer hyper-parameters (3-fold grid search on 1000 training rows, {time.perf_counter() - t0:.1f} s, not "
          f"counted in the peers' times): friedman1 KernelRidge / Nystroem+Ridge {hp['friedman1']['KernelRidge']} "
          f"(CV R^2 {hp['friedman1']['cv_score']:.3f}); mnist1d SVC {hp['mnist1d']['SVC']} (CV acc "
          f"{hp['mnist1d']['SVC_cv_score']:.3f}), Nystroem+RidgeClf {hp['mnist1d']['Nystroem+RidgeClf']} "
          f"(CV acc {hp['mnist1d']['Nystroem_cv_score']:.3f})", flush=True)

    # interleaved order: per N, alternate data sets, rotate the contender order with N
    jobs, dense_notes = [], {}
    for i, n in enumerate(sizes):
        per_ds = {ds: cs[i % len(cs):] + cs[:i % len(cs)] for ds, cs in CONTENDERS.items()}
        for seed in seeds_for(n):
            order = []
            for k in range(max(len(v) for v in per_ds.values())):
                for ds in CONTENDERS:
                    if k < len(per_ds[ds]):
                        order.append((ds, per_ds[ds][k]))
            for ds, c in order:
                jobs.append({"dataset": ds, "name": c, "n": n, "seed": seed, "hp": hp, "budget": budget_for(n, args.quick, args.budget_scale),
                             "tracemalloc": not args.no_tracemalloc})

    ctx = mp.get_context("fork")
    runs = []
    for j, job in enumerate(jobs):
        head = f"[{j + 1:3d}/{len(jobs)}] {job['dataset']:9s} N={job['n']:<7d} seed {job['seed']}  {job['name']:18s}"
        if job["name"] in DENSE and job["n"] > DENSE_LIMIT:
            gb = job["n"] ** 2 * 8 / 1e9
            msg = f"skipped: O(N^2) memory = {gb:.1f} GB (one dense N x N float64 kernel matrix)"
            note = f"{job['name']} at N = {job['n']:g}: {msg}"
            if note not in dense_notes.setdefault(job["dataset"], []):
                dense_notes[job["dataset"]].append(note)
            print(f"{head} {msg}", flush=True)
            runs.append(dict(job, hp=None, ok=False, skipped=msg))
            continue
        res = run_job(job, ctx)
        rec = dict(job, hp=None, **res)
        runs.append(rec)
        if not res["ok"]:
            print(f"{head} FAILED: {res['error']}", flush=True)
            continue
        last = res["curve"][-1] if res["curve"] else {"score": float("nan"), "wall": 0.0, "cpu": 0.0}
        tt = time_to(res["curve"], targets[job["dataset"]])
        info = res["info"]
        its = f"{info['n_iter']}/{info['max_iter']} it, stop {info['stop']}" if "n_iter" in info else info["stop"]
        warn = f"  warnings {res['warnings']}" if res["warnings"] else ""
        print(f"{head} score {last['score']:.4f}  train {last['wall']:7.2f} s (cpu {last['cpu']:7.2f})  to target "
              f"{fmt_t(tt):>6s} s  peak +{res['peak_mb']:6.0f} MB  ({its}; process {res['process_wall_s']:.0f} s)"
              f"{warn}", flush=True)

    summary = report(runs, sizes, targets, hp, dense_notes)
    total = time.perf_counter() - t_all
    load1 = os.getloadavg()
    print(f"\ntotal runtime {total:.0f} s ({total / 60:.1f} min); load average at the end {load1[0]:.1f} / "
          f"{load1[1]:.1f} / {load1[2]:.1f} on {os.cpu_count()} CPU(s): wall times include the effect of the other "
          "processes on this machine; the CPU-time table much less so")
    os.makedirs(RESULTS, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    out = {"config": {"sizes": sizes, "targets": targets, "n_test": N_TEST, "quick": args.quick,
                      "seeds": {str(n): seeds_for(n) for n in sizes}, "budgets_s": {str(n): budget_for(n, args.quick, args.budget_scale)
                                                                                     for n in sizes},
                      "dense_limit": DENSE_LIMIT, "hyperparameters": hp, "compile": False, "threads": 1},
           "environment": {"skflow": skflow.__version__, "sklearn": sklearn.__version__, "torch": torch.__version__,
                           "numpy": np.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
                           "loadavg_start": load0, "loadavg_end": load1, "total_runtime_s": total},
           "dense_notes": dense_notes, "runs": runs, "summary": summary}
    path = os.path.join(RESULTS, f"bench_time_to_accuracy{suffix}.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    print(f"raw numbers: {path}")
    plot(runs, sizes, targets, os.path.join(RESULTS, f"bench_time_to_accuracy{suffix}.png"))


if __name__ == "__main__":
    main()

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
``compile=False`` and ``random_state``; the fit is observed and, past a time budget, stopped as below);
``KernelRidge(kernel='rbf')``; ``Nystroem(n_components=min(1000, N))`` + ``Ridge``; ``MLPRegressor()`` at its
defaults (Adam, 100 hidden units, 200 epochs, tol 1e-4 / 10 epochs).
mnist1d (classification): ``RKHSNODEClassifier`` at its defaults but ``max_iter=100`` (100 epochs of minibatch
128, ``compile=False``; the default ``max_iter='auto'`` first runs a cross-validated search of probe fits of 100
epochs, which the monitor does not see, so that the budget below could not trim them);
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

* skflow estimators: one ``fit`` at the defaults, observed by its public ``monitor`` (``est.fit(X, y,
  monitor=...)``, called after every iteration with the fit's working copy of the estimator, whose ``flow_`` is the
  live engine). After iterations 1, 2, 3, 4, 5, 7, 9, 12, ... (x1.25) the monitor scores on the test set the live
  engine at that iteration's parameters (``estimator.score``), and its own time (``perf_counter`` / ``process_time``
  inside the monitor, at every iteration) is subtracted from the clock. The time of an intermediate point is the
  fit's time up to it (validation split and set-up included) plus one cost of the end of the fit, measured as the
  time from the last monitor call to ``fit`` returning (best-validation restore, VarPro's final re-projection, the
  diagnostics: kernel eigenvalues, W2 distances): what a single ``fit`` stopped there would cost. The intermediate
  points are the live engine, not the model a fit stopped there would return: neither the best-validation restore of
  ``early_stopping`` nor VarPro's final re-projection is applied to them. VarPro's live engine is one projection
  behind (its step projects the outer weights ``u`` at the features, then moves the features), which costs it a few
  steps: in a check on friedman1 at N = 1e3 its test R^2 after steps 1 / 3 / 5 / 7 was -221 / 0.35 / 0.85 / 0.91
  live and 0.86 / 0.91 / 0.92 / 0.93 re-projected, so its time to target here is an upper bound of a stopped fit's
  (it reached 0.9 at step 7 instead of 3). The last point is the fitted estimator itself (``est.score`` after
  ``fit``: best-validation parameters restored, diagnostics included) at the fit's full time. The estimators'
  stopping rules are their own (early stopping on a validation fifth and ``tol`` / ``n_iter_no_change`` for NODE and
  VarPro; RKHSNODE runs a fixed budget of ``max_iter = 100`` epochs). When the training-time budget below is spent,
  the monitor returns True after the iteration during which it ran out: the fit stops there (``stop_reason_ ==
  'monitor'``, shown as ``budget``) and finishes normally (best-validation restore where the estimator early-stops,
  re-projection, diagnostics). A first version of this script used ``warm_start`` chunks of growing ``max_iter``
  instead: with ``early_stopping`` every chunk ends at its best-validation parameters, and VarPro, whose validation
  risk rises during its first few steps before it falls, was rolled back to its starting point by every chunk
  shorter than about 20 steps (its score stayed flat at the initial projection's); one observed fit has no such
  artefact.
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
that holds the data pools), so that peaks never mix; just before fitting (after the data split) the child
resets its RSS high-water mark (``/proc/self/clear_refs``, Linux; without it the mark inherited from the parent
and the split's freed temporaries would hide small fits), and reports the increase of its peak resident set
size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over the fit, and the peak of ``tracemalloc`` over the
fit (Python and NumPy allocations only: torch's allocator is not traced), for the closed-form peers only by
default (``--tracemalloc all`` for every contender): tracing every allocation made the MLPs' ``partial_fit``
epochs (hundreds of small NumPy allocations per epoch) about 2x slower and RKHSNODE's minibatch epochs about
1.3x slower, and its own trace storage inflated RKHSNODE's RSS peak (several hundred MB at N = 3e4), whereas it
changes neither the time nor the RSS peak of the closed-form fits (a few large arrays); for the skflow
estimators it would see only Python objects anyway. The test-set evaluations happen
inside the child and are part of the peak: a prediction on 2000 rows (for the skflow estimators, by the live
engine, without a copy of it).

Budget and trimming (the full mode has to finish in about 40 minutes on a 2-core machine)
-----------------------------------------------------------------------------------------
* Each iterative run (skflow, MLP) has a budget of training time (the accounted wall time above: the test
  evaluations do not eat it) that depends on N: 60 s up to N = 3e3, 75 s at 1e4, 100 s at 3e4 and 150 s at
  1e5 (``--quick``: 5 s; ``--budget-scale`` multiplies them). A run stopped by it says ``budget`` in the
  iterations table (the step or epoch under way when the budget runs out is completed, so a run can exceed
  it by one step). The budget trims MeanFieldNODE from N = 1e4 on (about 0.3 s per full-batch float64 step
  at N = 1e4 and about 2 s at 1e5 on one shared core, against a default ``max_iter`` of 2000) and RKHSNODE
  from N = 1e4 on (100 epochs of minibatch 128: about 0.1 s per epoch at N = 1e3, 9 s at 1e5): their
  time-to-target is then "within the budget", and their final score is the score at the budget, not at the
  end of a default fit. The first checkpoint is after one step / epoch, so a time to target is never below
  the time of one step: at N >= 1e4 VarPro reaches R^2 = 0.9 after one or two steps, the MLPs reach their
  targets within a few epochs, and RKHSNODE reaches accuracy 0.6 within its first epoch at N = 1e5.
* KernelRidge and SVC are skipped above N = 2e4 (see above).
* Seeds: 0 and 1 at N = 1e3 (the table shows their mean; a time to target only when both seeds reach it),
  seed 0 above.
* ``compile=False``: ``torch.compile``'s fused kernels gave 10-20 % per step on this CPU but cost 10-30 s to
  build in every fresh process.

The contenders are interleaved: for each N (ascending) the runs alternate between the data sets and the
contender order rotates with N, so that a change of the machine's load does not fall on one contender only.

Outputs: the tables (rows N, columns contenders; cells: time to target (s) / final score / peak RSS increase
(MB)); the CPU-time table; the iterations table; the tracemalloc table; the smallest N from which an skflow
estimator is the fastest to the target at every larger N of the grid, or 'never in this range' ("fastest" only
when the runner-up needs more than ``TIE_FACTOR`` = 1.5 times as long, closer results are reported as ties:
these are single runs on a shared machine, whose wall-to-CPU time ratio varied from 1.0 to 2.0 between the runs
of one invocation); the same verdicts for a few other targets (``EXTRA_TARGETS``: R^2 0.95, accuracy 0.7 and
0.8); ``benchmarks/results/bench_time_to_accuracy.{txt,json,png}`` (``_quick`` with ``--quick``): the tables,
the raw curves and numbers, and a figure with time to target against N (log-log), peak memory against N, and
the score-against-time curves at the largest N.

Reference run (``benchmarks/results/bench_time_to_accuracy.txt``; skflow sources sha256 a8746c2fe8af)
----------------------------------------------------------------------------------------------------
Measured by the former version of this script, which read the fit by wrapping skflow's private training loop:
its intermediate points were finished as ``fit`` finishes (VarPro re-projected), so that VarPro's times to target
below are those of the re-projected model (the monitor's live engine reaches them a few steps later, see above),
and RKHSNODE ran its then default of 100 epochs (as ``max_iter=100`` here).

* friedman1, R^2 >= 0.9: VarPro is the fastest from N = 1e3 to 1e4 (1.6-4x ahead of KernelRidge at 1e3 and
  of the MLP at 3e3-1e4, in wall and CPU time); from 3e4 on the MLP ties or beats it (one step of full-batch
  VarPro costs O(N), while the MLP needs a roughly N-independent number of minibatch steps). MeanFieldNODE
  follows the same score-against-iteration curve at every N (the mean-field flow does not depend on N), so its
  time to target grows like N: 2 s at 1e3, 115 s at 1e5. No skflow estimator wins "from some N on".
* MNIST-1D, accuracy >= 0.6 (reached by nobody below N = 1e4): the MLP is the fastest at every N from 1e4
  (2-18x ahead). RKHSNODE has the best final accuracy at N = 1e4 and 1e5 and is the only contender to reach
  0.7 at 1e4, but its test accuracy swings by several points from one epoch to the next at its default
  constant time step, so a final score stopped by the budget is partly luck.
* Memory: KernelRidge 2.3 GB at N = 1e4; Nystroem + Ridge 1.6-2.4 GB at 1e5 (the N x 1000 feature matrix and
  its kernel blocks); the skflow estimators stay within 40-340 MB at every N (row-blocked steps), the MLPs
  within a few MB.

Run::

    python benchmarks/bench_time_to_accuracy.py --quick      # N in {500, 1000}, about a minute
    python benchmarks/bench_time_to_accuracy.py              # N in {1e3, 3e3, 1e4, 3e4, 1e5}, 17 min in the
                                                             # reference run (2 cores shared with other jobs)
    python benchmarks/bench_time_to_accuracy.py --from-json benchmarks/results/bench_time_to_accuracy.json \\
        --targets friedman1=0.93 mnist1d=0.7                  # re-tabulate stored curves for other targets
                                                             # (and redraw the figure next to the JSON file)
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
             "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
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

from _common import source_fingerprint  # noqa: E402

import skflow  # noqa: E402
from skflow import MeanFieldNODERegressor, RKHSNODEClassifier, VarProSHLRegressor  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
N_TEST = 2000
DENSE_LIMIT = 20_000  # KernelRidge / SVC above this N: skipped
DEFAULT_TARGETS = {"friedman1": 0.90, "mnist1d": 0.60}
EXTRA_TARGETS = {"friedman1": [0.95], "mnist1d": [0.70, 0.80]}  # also tabulated (wall time only)
# "fastest" needs the runner-up to take more than this many times as long, else it is a tie: on the shared machine
# the ratio of wall to CPU time of single runs varied from 1.0 to 2.0 between contenders of one run
TIE_FACTOR = 1.5
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
        return RKHSNODEClassifier(max_iter=100, random_state=seed, compile=False)  # see the module docstring
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


def run_skflow(est, Xtr, ytr, Xte, yte, budget, caught):
    """One default ``fit``, observed by its ``monitor``; returns (curve, info). See the module docstring."""
    st = {"next": 1, "eval_wall": 0.0, "eval_cpu": 0.0, "w0": 0.0, "c0": 0.0, "budget_hit": False,
          "end": None}
    curve = []

    def monitor(i, estimator, record):
        """After iteration ``i`` (from 0): score the live engine at the checkpoints, stop past the budget."""
        w1, c1 = _clock()
        trained_wall = w1 - st["w0"] - st["eval_wall"]  # the fit's own time so far, the monitor's excluded
        if i + 1 >= st["next"]:
            curve.append({"iter": i + 1, "wall": trained_wall, "cpu": c1 - st["c0"] - st["eval_cpu"],
                          "score": float(estimator.score(Xte, yte))})
            st["next"] = max(i + 2, int(math.ceil((i + 1) * 1.25)))
        stop = trained_wall > budget  # the step under way when the budget ran out is complete: stop here
        st["budget_hit"] = st["budget_hit"] or stop
        st["end"] = w2, c2 = _clock()
        st["eval_wall"] += w2 - w1
        st["eval_cpu"] += c2 - c1
        return stop

    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        st["w0"], st["c0"] = _clock()
        est.fit(Xtr, ytr, monitor=monitor)
        w1, c1 = _clock()
    caught.extend(ws)
    # the end of the fit after its last iteration (best-validation restore, VarPro's re-projection, diagnostics):
    # a fit stopped at any checkpoint would run it once too
    fin_wall, fin_cpu = (w1 - st["end"][0], c1 - st["end"][1]) if st["end"] is not None else (0.0, 0.0)
    n_evals = len(curve)
    for p in curve:
        p["wall"] += fin_wall
        p["cpu"] += fin_cpu
    curve.append({"iter": int(est.n_iter_), "wall": w1 - st["w0"] - st["eval_wall"],
                  "cpu": c1 - st["c0"] - st["eval_cpu"], "score": float(est.score(Xte, yte)), "final": True})
    return curve, {"n_iter": int(est.n_iter_), "max_iter": int(getattr(est, "max_iter_", est.max_iter)),
                   "stop": "budget" if st["budget_hit"] else est.stop_reason_, "n_evals": n_evals,
                   "finalize_s": fin_wall, "best_validation_restored": bool(est.early_stopping)}


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


def _reset_peak_rss():
    """Reset this process's RSS high-water mark to its current RSS (Linux ``/proc/self/clear_refs``, value 5).

    A forked child starts with a high-water mark at the parent's RSS, and the data split before the fit leaves
    freed memory under it: without the reset, a fit that allocates less than that would show no increase.
    ``getrusage``'s ``ru_maxrss`` is that high-water mark, so after the reset it reads the current RSS.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def child(job, conn):
    """One (contender, dataset, N, seed) in its own process; sends back its curve and memory numbers."""
    try:
        _pin_threads()
        Xtr, ytr, Xte, yte = split(job["dataset"], job["n"], job["seed"])
        est = make_model(job["name"], job["dataset"], job["seed"], job["n"], job["hp"])
        gc.collect()
        reset = _reset_peak_rss()
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
                   "peak_method": "clear_refs reset + ru_maxrss" if reset else "ru_maxrss (high-water mark not reset)",
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
    """Per N: the contender fastest to the target, or a tie, or None; and the N from which skflow wins.

    A contender is "the fastest" only when the runner-up needs more than ``TIE_FACTOR`` times its time (single
    runs on a shared machine: closer results are a tie, ``"A ~ B"``); skflow wins at N when the fastest,
    not tied, is an skflow estimator. ``from_n`` is the smallest N of the grid from which it wins at every
    larger N too (None: never in this range).
    """
    per_n = {}
    for n in sizes:
        times = []
        for c in CONTENDERS[dataset]:
            a = aggregate(runs, dataset, c, n, target)
            t = None if a is None or "t_wall" not in a else a["t_" + clock]
            if t is not None:
                times.append((t, c))
        times.sort()
        if not times:
            per_n[n] = None
            continue
        tied = [c for t, c in times if t <= TIE_FACTOR * times[0][0]]
        ratio = times[1][0] / max(times[0][0], 1e-12) if len(times) > 1 else math.inf
        per_n[n] = {"winner": None if len(tied) > 1 else times[0][1], "tied": tied, "time": times[0][0],
                    "ratio": ratio}
    from_n = None
    for n in reversed(sizes):
        if per_n[n] is not None and per_n[n]["winner"] in SKFLOW:
            from_n = n
        else:
            break
    return per_n, from_n


def describe(per_n, from_n):
    """Printable per-N winners and the verdict; also the list of N where an skflow estimator wins."""
    parts = []
    for n, w in per_n.items():
        if w is None:
            parts.append(f"{n:g}: nobody")
        elif w["winner"] is None:
            parts.append(f"{n:g}: tie {' ~ '.join(w['tied'])}")
        else:
            parts.append(f"{n:g}: {w['winner']}" + (f" ({w['ratio']:.1f}x ahead)" if math.isfinite(w["ratio"])
                                                   else " (the only one)"))
    wins = [n for n, w in per_n.items() if w and w["winner"] in SKFLOW]
    verdict = f"from N = {from_n:g} on" if from_n is not None else "never in this range"
    if from_n is None and wins:
        verdict += f" (but it is at N = {', '.join(f'{n:g}' for n in wins)})"
    return ", ".join(parts), verdict, wins


def report_to_file(path, footer, *args):
    """:func:`report` followed by ``footer``, printed and also written to ``path``."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        summary = report(*args)
        print("\n" + footer)
    print(buf.getvalue(), end="")
    with open(path, "w") as fh:
        fh.write(buf.getvalue())
    print(f"tables: {path}")
    return summary


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
        print_table("\ntracemalloc peak during the fit (MB; Python/NumPy allocations only, torch not traced; "
                    "'-': not traced)", sizes, cs, tm)
        for note in dense_notes.get(ds, []):
            print("  " + note)
        out = {"target": target, "metric": metric}
        for clock in ("wall", "cpu"):
            per_n, from_n = winners(runs, ds, sizes, target, clock)
            txt, verdict, wins = describe(per_n, from_n)
            print(f"fastest to the target ({clock} time; tie: within x{TIE_FACTOR:g}): {txt}\n"
                  f"  -> an skflow estimator is the fastest {verdict}")
            out[clock] = {"fastest": {str(n): w for n, w in per_n.items()}, "skflow_wins_from": from_n,
                          "skflow_fastest_at": wins}
        out["cells"] = {f"{n}|{c}": v for (n, c), v in agg.items()}
        out["extra_targets"] = {}
        for extra in EXTRA_TARGETS.get(ds, []):
            if extra == target:
                continue
            ex = {(n, c): aggregate(runs, ds, c, n, extra) for n in sizes for c in cs}
            print_table(f"\nother target: wall-clock time to test {metric} >= {extra:g} (s)", sizes, cs,
                        {k: (cell(v).split(" / ")[0] if v and "t_wall" in v else cell(v)) for k, v in ex.items()})
            per_n, from_n = winners(runs, ds, sizes, extra, "wall")
            txt, verdict, wins = describe(per_n, from_n)
            print(f"fastest (wall time): {txt}\n  -> an skflow estimator is the fastest {verdict}")
            out["extra_targets"][str(extra)] = {"fastest": {str(n): w for n, w in per_n.items()},
                                                "skflow_wins_from": from_n, "skflow_fastest_at": wins}
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
    names = sorted({c for cs in CONTENDERS.values() for c in cs})
    colour = {c: f"C{i}" for i, c in enumerate(names)}
    for row, ds in enumerate(CONTENDERS):
        target = targets[ds]
        nmax = max(n for n in sizes if any(r["dataset"] == ds and r["n"] == n and r.get("ok") for r in runs))
        for c in CONTENDERS[ds]:
            style = "-" if c in SKFLOW else "--"
            aggs = [(n, aggregate(runs, ds, c, n, target)) for n in sizes]
            pts = [(n, a["t_wall"]) for n, a in aggs if a and a.get("t_wall") is not None]
            if pts:
                axes[row, 0].loglog(*zip(*pts), style, marker="o", color=colour[c], label=c)
            mem = [(n, max(a["peak_mb"], 0.5)) for n, a in aggs if a and "peak_mb" in a]
            if mem:
                axes[row, 1].loglog(*zip(*mem), style, marker="o", color=colour[c], label=c)
            for r in runs:
                if r["dataset"] == ds and r["name"] == c and r["n"] == nmax and r.get("ok") and r["seed"] == 0:
                    xs = [max(p["wall"], 1e-3) for p in r["curve"]]
                    axes[row, 2].semilogx(xs, [p["score"] for p in r["curve"]], style, marker="." if len(xs) > 1
                                          else "o", color=colour[c], label=c)
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
def run_footer(env):
    total, l0, l1 = env["total_runtime_s"], env["loadavg_start"], env["loadavg_end"]
    return (f"total runtime {total:.0f} s ({total / 60:.1f} min); load average (1/5/15 min) {l0[0]:.1f} / "
            f"{l0[1]:.1f} / {l0[2]:.1f} at the start, {l1[0]:.1f} / {l1[1]:.1f} / {l1[2]:.1f} at the end, on "
            f"{env['cpus']} CPU(s) shared with other jobs: the wall times include their effect, the CPU times much "
            f"less so. skflow "
            f"{env['skflow']} (sources sha256 {env.get('skflow_sources_sha256', '?')}), scikit-learn {env['sklearn']}, "
            f"torch {env['torch']}, numpy {env['numpy']}, Python {env['python']}.")


def budget_for(n, quick, scale=1.0):
    if quick:
        return 5.0 * scale
    return scale * (60.0 if n <= 3000 else 75.0 if n <= 10_000 else 100.0 if n <= 30_000 else 150.0)


def parse_targets(items):
    targets = dict(DEFAULT_TARGETS)
    for it in items or []:
        k, v = it.split("=")
        targets[k] = float(v)
    return targets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N in {500, 1000}, 5 s budgets, small grids")
    parser.add_argument("--sizes", type=float, nargs="+", help="override the training sizes")
    parser.add_argument("--targets", nargs="+", help="e.g. friedman1=0.9 mnist1d=0.6")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply the training-time budgets")
    parser.add_argument("--tracemalloc", choices=["closed", "all", "none"], default="closed",
                        help="where tracemalloc runs during the fit: the closed-form peers only (default), all, none")
    parser.add_argument("--from-json", help="re-tabulate a stored result (no fitting)")
    args = parser.parse_args()
    targets = parse_targets(args.targets)

    if args.from_json:
        with open(args.from_json) as fh:
            stored = json.load(fh)
        sizes = stored["config"]["sizes"]
        base = os.path.splitext(args.from_json)[0]
        same = targets == stored["config"]["targets"]
        summary = report_to_file(base + (".txt" if same else "_retargeted.txt"), run_footer(stored["environment"]),
                                 stored["runs"], sizes, targets, stored["config"]["hyperparameters"],
                                 stored.get("dense_notes", {}))
        if same:  # the stored curves are unchanged; refresh the verdicts stored with them
            stored["summary"] = summary
            with open(args.from_json, "w") as fh:
                json.dump(stored, fh, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
        plot(stored["runs"], sizes, targets, base + (".png" if same else "_retargeted.png"))
        return

    t_all = time.perf_counter()
    _pin_threads()
    sizes = [int(n) for n in (args.sizes or ([500, 1000] if args.quick else [1000, 3000, 10_000, 30_000, 100_000]))]
    seeds_for = (lambda n: [0]) if args.quick else (lambda n: [0, 1] if n <= 1000 else [0])
    load0 = os.getloadavg()
    sources = source_fingerprint()
    print(f"skflow {skflow.__version__}, scikit-learn {sklearn.__version__}, torch {torch.__version__}, "
          f"numpy {np.__version__}, Python {platform.python_version()}; skflow sources sha256 {sources}; "
          f"{os.cpu_count()} CPU(s), "
          f"load average at start {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f} (1/5/15 min); "
          "one thread per process")
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
                jobs.append({"dataset": ds, "name": c, "n": n, "seed": seed, "hp": hp,
                             "budget": budget_for(n, args.quick, args.budget_scale),
                             "tracemalloc": args.tracemalloc == "all" or (args.tracemalloc == "closed"
                                                                          and c not in ITERATIVE)})

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

    os.makedirs(RESULTS, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    env = {"skflow": skflow.__version__, "skflow_sources_sha256": sources, "sklearn": sklearn.__version__,
           "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
           "cpus": os.cpu_count(), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
           "total_runtime_s": time.perf_counter() - t_all}
    summary = report_to_file(os.path.join(RESULTS, f"bench_time_to_accuracy{suffix}.txt"), run_footer(env), runs,
                             sizes, targets, hp, dense_notes)
    out = {"config": {"sizes": sizes, "targets": targets, "n_test": N_TEST, "quick": args.quick,
                      "seeds": {str(n): seeds_for(n) for n in sizes},
                      "budgets_s": {str(n): budget_for(n, args.quick, args.budget_scale) for n in sizes},
                      "dense_limit": DENSE_LIMIT, "hyperparameters": hp, "compile": False, "threads": 1},
           "environment": env, "dense_notes": dense_notes, "runs": runs, "summary": summary}
    path = os.path.join(RESULTS, f"bench_time_to_accuracy{suffix}.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    print(f"raw numbers: {path}")
    plot(runs, sizes, targets, os.path.join(RESULTS, f"bench_time_to_accuracy{suffix}.png"))


if __name__ == "__main__":
    main()

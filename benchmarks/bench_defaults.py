"""Benchmark of skflow's *default* estimators against tuned kernel baselines, on small standard datasets.

What is measured
----------------
For each dataset and each of 3 random splits (``train_test_split(test_size=0.25, random_state=s)``,
stratified for classification), every model is fitted on the training part and scored on the test part
(R^2 for regression, accuracy for classification). The models, all behind a ``StandardScaler`` (inside the
pipeline, so that grid searches scale within each CV fold):

* regression: ``MeanFieldNODERegressor(random_state=s)`` and ``VarProSHLRegressor(random_state=s)`` at their
  defaults; ``VarProSHLRegressor`` with ``GridSearchCV`` (cv=5) over ``alpha in {1e-4, ..., 1}`` ("its own
  best grid value"); the baseline ``KernelRidge(kernel='rbf')`` tuned by ``GridSearchCV`` (cv=5) over
  ``alpha = logspace(-6, 0, 7)`` x ``gamma = logspace(-3, 0, 7)``, with standardised targets
  (``TransformedTargetRegressor``: an RBF kernel ridge has no intercept).
* classification: ``RKHSNODEClassifier(random_state=s)`` at its defaults; the baselines ``SVC()`` and ``SVC``
  tuned by ``GridSearchCV`` (cv=5) over ``C = logspace(-1, 3, 5)`` x ``gamma in {'scale', 1e-3, 1e-2, 1e-1}``.

Datasets: regression ``load_diabetes``; ``make_friedman1/2/3(n_samples=1500, random_state=0)`` with noise
1.0 / 125 / 0.1 (Friedman 1 at its usual unit noise; Friedman 2 and 3 at the noise levels of Breiman's
bagging experiments, a signal-to-noise ratio of about 3:1 in standard deviation, so that the tasks are noisy
but learnable); classification ``load_digits``, ``load_wine``, ``load_breast_cancer``, ``load_iris`` and
MNIST-1D (``mnist1d.data.make_dataset`` at its default arguments: 4000 train / 1000 test, 40 features,
10 classes). MNIST-1D has a fixed split, so its "splits" are 3 model seeds instead; the deterministic
baselines (SVC) are then fitted once and their result repeated. MNIST-1D is skipped (with a note) when the
``mnist1d`` package is missing (``pip install mnist1d``, or the project's ``benchmarks`` extra).

Recorded per fit: the test score, the wall-clock fit time (grid searches include the search and the refit),
and the warnings raised during ``fit`` (``warnings.catch_warnings(record=True)`` with
``simplefilter('always')``), by category. The table gives, for each dataset x model, the mean +- standard
deviation (ddof=1) of the score over the splits, the median fit time, the median over splits of the ratio
of the fit time to the tuned kernel baseline's (tuned KernelRidge / tuned SVC), and the total warnings.

Verdicts (the criterion of the issue), for each skflow default model against each baseline: the mean over
datasets of its mean test score is at least the baseline's minus 0.01, and no dataset's mean is below the
baseline's by more than 0.03; VarPro's default mean is within 0.01 of the grid-searched VarPro's on every
dataset; the default fits raise no warnings.

Everything runs on the CPU on one thread (``torch.set_num_threads(1)`` and ``threadpool_limits(1)`` for
BLAS / OpenMP), so the fit-time ratios compare single-threaded fits. Results go to
``benchmarks/results/defaults.{json,md}`` (``defaults_quick.*`` with ``--quick``).

Run::

    python benchmarks/bench_defaults.py                      # full run (about 20-30 minutes on one core)
    python benchmarks/bench_defaults.py --quick              # smoke test: diabetes + iris, 1 split, tiny grids
    python benchmarks/bench_defaults.py --datasets diabetes wine --models VarPro "SVC (tuned)" --splits 2
"""

import argparse
import json
import os
import platform
import time
import warnings
from collections import Counter

import numpy as np
import sklearn
import torch
from _common import source_fingerprint
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_wine,
    make_friedman1,
    make_friedman2,
    make_friedman3,
)
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

import skflow
from skflow import MeanFieldNODERegressor, RKHSNODEClassifier, VarProSHLRegressor

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
FRIEDMAN = {"friedman1": (make_friedman1, 1.0), "friedman2": (make_friedman2, 125.0),
            "friedman3": (make_friedman3, 0.1)}
SKLEARN_LOADERS = {"diabetes": load_diabetes, "digits": load_digits, "wine": load_wine,
                   "breast_cancer": load_breast_cancer, "iris": load_iris}
REGRESSION = ["diabetes", "friedman1", "friedman2", "friedman3"]
CLASSIFICATION = ["digits", "wine", "breast_cancer", "iris", "mnist1d"]
QUICK_DATASETS = ["diabetes", "iris"]
BASELINE = {"regression": "KernelRidge (tuned)", "classification": "SVC (tuned)"}
SKFLOW_DEFAULTS = {"MeanFieldNODE": "regression", "VarPro": "regression", "RKHSNODE": "classification"}
TOL_MEAN, TOL_WORST = 0.01, 0.03


# ----------------------------------------------------------------------------------------------- datasets
def task_of(name):
    return "regression" if name in REGRESSION else "classification"


def load_xy(name):
    """(X, y) of a non-MNIST-1D dataset; the Friedman sets are drawn once with ``random_state=0``."""
    if name in FRIEDMAN:
        make, noise = FRIEDMAN[name]
        return make(n_samples=1500, noise=noise, random_state=0)
    return SKLEARN_LOADERS[name](return_X_y=True)


def load_mnist1d():
    """MNIST-1D at its default arguments: (Xtr, Xte, ytr, yte), or None when the package is missing."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        print("note: mnist1d is not installed (pip install mnist1d); MNIST-1D is skipped")
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = make_dataset(get_dataset_args())
    return d["x"], d["x_test"], d["y"], d["y_test"]


def make_splits(name, n_splits):
    """List of (split_id, Xtr, Xte, ytr, yte, fixed); ``fixed``: the same data for every split (MNIST-1D)."""
    if name == "mnist1d":
        data = load_mnist1d()
        return [] if data is None else [(s, *data, True) for s in range(n_splits)]
    X, y = load_xy(name)
    strat = task_of(name) == "classification"
    out = []
    for s in range(n_splits):
        parts = train_test_split(X, y, test_size=0.25, random_state=s, stratify=y if strat else None)
        out.append((s, *parts, False))
    return out


# ------------------------------------------------------------------------------------------------- models
def grids(quick):
    if quick:
        return {"krr": {"alpha": [1e-3, 1e-1], "gamma": [1e-2, 1e-1]},
                "svc": {"C": [1.0, 10.0], "gamma": ["scale", 1e-2]},
                "varpro": [1e-3, 1e-1], "cv": 3}
    return {"krr": {"alpha": np.logspace(-6, 0, 7), "gamma": np.logspace(-3, 0, 7)},
            "svc": {"C": np.logspace(-1, 3, 5), "gamma": ["scale", 1e-3, 1e-2, 1e-1]},
            "varpro": [1e-4, 1e-3, 1e-2, 1e-1, 1.0], "cv": 5}


def prefixed(step, grid):
    return {f"{step}__{k}": list(v) for k, v in grid.items()}


def model_factories(quick):
    """name -> (task, deterministic, factory(seed))."""
    g = grids(quick)
    krr = make_pipeline(StandardScaler(), TransformedTargetRegressor(KernelRidge(kernel="rbf"),
                                                                     transformer=StandardScaler()))
    krr_grid = prefixed("transformedtargetregressor__regressor", g["krr"])
    return {
        "MeanFieldNODE": ("regression", False,
                          lambda s: make_pipeline(StandardScaler(), MeanFieldNODERegressor(random_state=s))),
        "VarPro": ("regression", False,
                   lambda s: make_pipeline(StandardScaler(), VarProSHLRegressor(random_state=s))),
        "VarPro (grid alpha)": ("regression", False, lambda s: GridSearchCV(
            make_pipeline(StandardScaler(), VarProSHLRegressor(random_state=s)),
            {"varproshlregressor__alpha": g["varpro"]}, cv=g["cv"])),
        "KernelRidge (tuned)": ("regression", True, lambda s: GridSearchCV(krr, krr_grid, cv=g["cv"])),
        "RKHSNODE": ("classification", False,
                     lambda s: make_pipeline(StandardScaler(), RKHSNODEClassifier(random_state=s))),
        "SVC()": ("classification", True, lambda s: make_pipeline(StandardScaler(), SVC())),
        "SVC (tuned)": ("classification", True, lambda s: GridSearchCV(
            make_pipeline(StandardScaler(), SVC()), prefixed("svc", g["svc"]), cv=g["cv"])),
    }


def extra_info(est):
    """The grid search's chosen parameters, or the skflow estimator's ``n_iter_``."""
    if isinstance(est, GridSearchCV):
        return {k.split("__")[-1]: (v if isinstance(v, str) else float(v)) for k, v in est.best_params_.items()}
    last = est[-1]
    return {"n_iter": int(last.n_iter_)} if type(last).__module__.startswith("skflow") else {}


def fit_and_score(factory, seed, Xtr, Xte, ytr, yte):
    """Fit ``factory(seed)``; return score, fit time and the warnings raised by ``fit``."""
    est = factory(seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        est.fit(Xtr, ytr)
        fit_time = time.perf_counter() - t0
    cats = Counter(w.category.__name__ for w in caught)
    messages = sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught})
    return {"score": float(est.score(Xte, yte)), "fit_time": fit_time, "n_warnings": len(caught),
            "warning_categories": dict(cats), "warning_messages": messages, "info": extra_info(est)}


# ---------------------------------------------------------------------------------------------------- run
def run_dataset(name, models, factories, n_splits):
    """All records of one dataset."""
    records, cache = [], {}
    for split_id, Xtr, Xte, ytr, yte, fixed in make_splits(name, n_splits):
        for m in models:
            task, deterministic, factory = factories[m]
            if task != task_of(name):
                continue
            if fixed and deterministic and m in cache:
                rec = dict(cache[m], reused=True)
            else:
                rec = fit_and_score(factory, split_id, Xtr, Xte, ytr, yte)
                cache[m] = rec
            rec = dict(rec, dataset=name, model=m, split=split_id, n_train=len(ytr), n_test=len(yte))
            records.append(rec)
            print(f"  {name:14s} split {split_id}  {m:20s} score {rec['score']:.4f}  fit {rec['fit_time']:7.2f}s"
                  f"  warnings {rec['warning_categories'] or 0}" + ("  (reused)" if rec.get("reused") else ""),
                  flush=True)
    return records


def summarise(records):
    """(dataset, model) -> mean/std score, median time, median time ratio to the tuned baseline, warnings."""
    summary = {}
    keys = sorted({(r["dataset"], r["model"]) for r in records}, key=lambda k: (k[0], k[1]))
    for ds, m in keys:
        rs = sorted((r for r in records if r["dataset"] == ds and r["model"] == m), key=lambda r: r["split"])
        base = {r["split"]: r["fit_time"] for r in records
                if r["dataset"] == ds and r["model"] == BASELINE[task_of(ds)]}
        scores = np.array([r["score"] for r in rs])
        ratios = [r["fit_time"] / base[r["split"]] for r in rs if r["split"] in base]
        cats = Counter()
        for r in rs:
            cats.update(r["warning_categories"])
        summary[(ds, m)] = {
            "mean": float(scores.mean()), "std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            "min": float(scores.min()), "max": float(scores.max()), "n": len(scores),
            "fit_time_median": float(np.median([r["fit_time"] for r in rs])),
            "time_ratio_median": float(np.median(ratios)) if ratios else None,
            "n_warnings": int(sum(r["n_warnings"] for r in rs)), "warning_categories": dict(cats)}
    return summary


# ------------------------------------------------------------------------------------------------ verdicts
def compare(summary, model, baseline, datasets):
    """Criterion of the issue for ``model`` against ``baseline`` on the datasets where both ran."""
    ds = [d for d in datasets if (d, model) in summary and (d, baseline) in summary]
    if not ds:
        return None
    gaps = {d: summary[(d, model)]["mean"] - summary[(d, baseline)]["mean"] for d in ds}
    mean_gap = float(np.mean(list(gaps.values())))
    worst = min(gaps, key=gaps.get)
    ok = mean_gap >= -TOL_MEAN and gaps[worst] >= -TOL_WORST
    return {"model": model, "baseline": baseline, "datasets": ds, "mean_gap": mean_gap,
            "worst_dataset": worst, "worst_gap": gaps[worst], "gaps": gaps, "pass": bool(ok)}


def varpro_check(summary, datasets):
    ds = [d for d in datasets if (d, "VarPro") in summary and (d, "VarPro (grid alpha)") in summary]
    if not ds:
        return None
    gaps = {d: summary[(d, "VarPro")]["mean"] - summary[(d, "VarPro (grid alpha)")]["mean"] for d in ds}
    return {"gaps": gaps, "worst_gap": min(gaps.values()), "pass": bool(min(gaps.values()) >= -TOL_MEAN)}


def verdicts(summary, datasets):
    out = {"vs_baseline": [], "varpro_grid": varpro_check(summary, datasets), "warnings": {}}
    for model, task in SKFLOW_DEFAULTS.items():
        baselines = ["KernelRidge (tuned)"] if task == "regression" else ["SVC (tuned)", "SVC()"]
        for b in baselines:
            v = compare(summary, model, b, datasets)
            if v is not None:
                out["vs_baseline"].append(v)
        n = sum(s["n_warnings"] for (d, m), s in summary.items() if m == model)
        if any(m == model for (_, m) in summary):
            out["warnings"][model] = {"n_warnings": n, "pass": n == 0, "by_dataset": {
                d: s["warning_categories"] for (d, m), s in summary.items() if m == model and s["n_warnings"]}}
    return out


# ------------------------------------------------------------------------------------------------- report
def table_md(summary, datasets, models):
    lines = ["| dataset | model | test score (mean ± std) | min .. max | fit time (s, median) "
             "| time / tuned baseline | warnings |", "|---|---|---|---|---|---|---|"]
    for d in datasets:
        for m in models:
            s = summary.get((d, m))
            if s is None:
                continue
            ratio = "—" if s["time_ratio_median"] is None else f"{s['time_ratio_median']:.2f}"
            warn = str(s["n_warnings"]) + (f" ({', '.join(f'{k}×{v}' for k, v in s['warning_categories'].items())})"
                                           if s["n_warnings"] else "")
            lines.append(f"| {d} | {m} | {s['mean']:.4f} ± {s['std']:.4f} | {s['min']:.4f} .. {s['max']:.4f} "
                         f"| {s['fit_time_median']:.2f} | {ratio} | {warn} |")
    return "\n".join(lines)


def verdicts_md(v):
    lines = []
    for c in v["vs_baseline"]:
        gaps = ", ".join(f"{d} {g:+.4f}" for d, g in c["gaps"].items())
        lines.append(f"- **{c['model']} vs {c['baseline']}**: {'PASS' if c['pass'] else 'FAIL'} — mean gap "
                     f"{c['mean_gap']:+.4f} (need ≥ -{TOL_MEAN}), worst {c['worst_dataset']} {c['worst_gap']:+.4f} "
                     f"(need ≥ -{TOL_WORST}); per dataset: {gaps}")
    if v["varpro_grid"]:
        g = v["varpro_grid"]
        gaps = ", ".join(f"{d} {x:+.4f}" for d, x in g["gaps"].items())
        lines.append(f"- **VarPro default vs its grid-searched alpha**: {'PASS' if g['pass'] else 'FAIL'} — worst "
                     f"gap {g['worst_gap']:+.4f} (need ≥ -{TOL_MEAN}); per dataset: {gaps}")
    for m, w in v["warnings"].items():
        detail = "; ".join(f"{d}: {c}" for d, c in w["by_dataset"].items())
        lines.append(f"- **{m} default fits raise no warnings**: {'PASS' if w['pass'] else 'FAIL'} — "
                     f"{w['n_warnings']} warnings" + (f" ({detail})" if detail else ""))
    return "\n".join(lines)


def write_outputs(args, records, summary, v, table, verdict_text, wall):
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, "defaults_quick" if args.quick else "defaults")
    meta = {"args": vars(args), "wall_time_s": wall, "skflow": skflow.__version__,
            "skflow_sources_sha256": args.fingerprint, "sklearn": sklearn.__version__,
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "torch_threads": torch.get_num_threads()}
    with open(stem + ".json", "w") as f:
        json.dump({"meta": meta, "records": records, "verdicts": v,
                   "summary": [dict(dataset=d, model=m, **s) for (d, m), s in summary.items()]}, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(f"# skflow defaults vs tuned kernel baselines\n\n{table}\n\n## Verdicts\n\n{verdict_text}\n\n"
                f"Wall time {wall:.0f} s; skflow {meta['skflow']}, scikit-learn {meta['sklearn']}, "
                f"torch {meta['torch']}, {meta['torch_threads']} torch thread(s); skflow sources sha256 "
                f"{meta['skflow_sources_sha256']}.\n")
    print(f"\nwrote {stem}.json and {stem}.md")


# --------------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke mode: diabetes + iris, 1 split, tiny grids")
    p.add_argument("--datasets", nargs="+", choices=REGRESSION + CLASSIFICATION, help="subset of datasets")
    p.add_argument("--models", nargs="+", choices=list(model_factories(False)), help="subset of models")
    p.add_argument("--splits", type=int, default=None, help="number of random splits (default 3; 1 with --quick)")
    args = p.parse_args(argv)
    args.datasets = args.datasets or (QUICK_DATASETS if args.quick else REGRESSION + CLASSIFICATION)
    args.models = args.models or list(model_factories(False))
    args.splits = args.splits or (1 if args.quick else 3)
    return args


def main(argv=None):
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):  # BLAS/OpenMP too: 2 oversubscribed threads made KernelRidge 50x slower
        return run(argv)


def run(argv=None):
    args = parse_args(argv)
    args.fingerprint = source_fingerprint()  # at start: others may edit skflow/ while this runs
    print(f"skflow {skflow.__version__}, sources sha256 {args.fingerprint}", flush=True)
    factories = model_factories(args.quick)
    t0 = time.perf_counter()
    records = []
    for name in args.datasets:
        print(f"{name} ({task_of(name)})", flush=True)
        records += run_dataset(name, args.models, factories, args.splits)
    wall = time.perf_counter() - t0
    summary = summarise(records)
    v = verdicts(summary, args.datasets)
    table, verdict_text = table_md(summary, args.datasets, args.models), verdicts_md(v)
    print("\n" + table + "\n\n" + verdict_text + f"\n\nwall time {wall:.0f} s")
    write_outputs(args, records, summary, v, table, verdict_text, wall)
    return records, summary, v


if __name__ == "__main__":
    main()

"""One rank of the data-parallel tests (tests/test_distributed.py), and the cases they share with the test.

Run as ``python _distributed_worker.py RANK WORLD_SIZE PORT OUT_FILE [CASE ...]``: joins a gloo process group on
127.0.0.1, fits every case on this rank's shard of its data set and pickles, per case, the predictions on the
case's test inputs, the fitted parameters and attributes into ``OUT_FILE``. The test fits the same cases on all
the rows in one process and compares. The ``MISMATCHES`` give the ranks estimators or data that disagree (or no
rows to one rank): each rank records its error, and the test checks that the ranks raise the same clear error at
once. The group's timeout is short (``PG_TIMEOUT_S``), so that no collective can hang the tests.
"""

import datetime
import os
import pickle
import sys
import time
import warnings

import numpy as np

#: rows of rank 0 of every case (rank 1 takes the rest): an uneven split
SPLIT = 37
N_ROWS = 100
#: the process group's timeout (seconds): no collective of the tests can wait longer (the environment variable
#: SKFLOW_TEST_PG_TIMEOUT_S overrides it, for the test of the timeout itself)
PG_TIMEOUT_S = 60


def regression_data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(N_ROWS + 20, 4))
    y = np.sin(2.0 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=N_ROWS + 20) + 3.0
    return X[:N_ROWS], 10.0 * y[:N_ROWS], X[N_ROWS:]


def classification_data():
    rng = np.random.RandomState(1)
    centres = np.array([[2.0, 0.0, 0.0], [-1.0, 1.7, 0.0], [-1.0, -1.7, 0.5]])
    labels = rng.randint(0, 3, size=N_ROWS + 20)
    X = centres[labels] + rng.normal(size=(N_ROWS + 20, 3))
    y = np.array(["ant", "bee", "cat"])[labels]
    return X[:N_ROWS], y[:N_ROWS], X[N_ROWS:]


def label_subset_data():
    """Rank 0 sees classes 'ant' and 'bee' only, rank 1 'bee' and 'cat' (sorted by label, then split)."""
    X, y, X_test = classification_data()
    order = np.argsort(y, kind="stable")
    X, y = X[order], y[order]
    n_ant, n_bee = int((y == "ant").sum()), int((y == "bee").sum())
    return X, y, X_test, n_ant + n_bee // 2


def _node(**kw):
    from skflow import MeanFieldNODERegressor

    params = dict(n_layers=3, width=12, max_iter=12, tol=0.0, early_stopping=False, random_state=0, device="cpu",
                  compile=False, kernel_subsample=30)
    params.update(kw)
    return MeanFieldNODERegressor(**params)


def _rkhs(**kw):
    from skflow import RKHSNODEClassifier

    params = dict(n_layers=2, n_features=24, batch_size=None, max_iter=12, random_state=0, device="cpu",
                  compile=False, kernel_subsample=30)
    params.update(kw)
    return RKHSNODEClassifier(**params)


def _varpro(**kw):
    from skflow import VarProSHLRegressor

    params = dict(width=12, alpha=1e-2, max_iter=12, tol=0.0, early_stopping=False, random_state=0, device="cpu",
                  compile=False, kernel_subsample=30)
    params.update(kw)
    return VarProSHLRegressor(**params)


def _data(kind):
    if kind == "regression":
        return (*regression_data(), SPLIT)
    if kind == "classification":
        return (*classification_data(), SPLIT)
    if kind == "bad":  # a NaN in the rows of rank 1
        X, y, X_test = regression_data()
        X = X.copy()
        X[SPLIT + 3, 0] = np.nan
        return X, y, X_test, SPLIT
    return label_subset_data()


#: name -> (estimator factory, data set, whether a 2-rank fit must equal a 1-process fit on all the rows)
CASES = {
    "node": (lambda: _node(), "regression", True),
    "node_auto_lr": (lambda: _node(learning_rate="auto", solver="midpoint", n_layers=2), "regression", True),
    "node_minibatch": (lambda: _node(batch_size=16), "regression", False),
    "node_early_stopping": (lambda: _node(early_stopping=True, tol=1e-3, n_iter_no_change=2), "regression", False),
    "rkhs": (lambda: _rkhs(), "classification", True),
    "rkhs_squared": (lambda: _rkhs(loss="squared", learning_rate=100.0, length_scale=2.0, alpha=1e-3,
                                   momentum=0.0), "classification", True),
    "rkhs_minibatch": (lambda: _rkhs(batch_size=20), "classification", False),
    "rkhs_label_subsets": (lambda: _rkhs(), "label_subsets", True),
    "varpro": (lambda: _varpro(), "regression", True),
    "varpro_auto": (lambda: _varpro(alpha="auto"), "regression", True),
    "varpro_two_timescale": (lambda: _varpro(solver="two-timescale"), "regression", True),
    "varpro_gd_auto": (lambda: _varpro(solver="gd", alpha="auto", learning_rate=1e-3), "regression", True),
    "varpro_rbf": (lambda: _varpro(feature_map="rbf", rbf_kernel="gaussian"), "regression", True),
    "varpro_early_stopping": (lambda: _varpro(alpha="auto", early_stopping=True), "regression", False),
    "varpro_minibatch": (lambda: _varpro(batch_size=20, learning_rate=1e-3), "regression", False),
    "bad_rank1": (lambda: _node(), "bad", False),
    # sample weights (some 0): the weights' totals and the weighted sums are all-reduced
    "node_weighted": (lambda: _node(), "regression", True),
    "rkhs_weighted": (lambda: _rkhs(), "classification", True),
    "varpro_auto_weighted": (lambda: _varpro(alpha="auto"), "regression", True),
    "rkhs_minibatch_weighted": (lambda: _rkhs(batch_size=20), "classification", False),
}


def case_weights(name):
    """The sample weights of a case (integers 0-3, seeded), or None."""
    if not name.endswith("_weighted"):
        return None
    return np.random.RandomState(7).randint(0, 4, N_ROWS).astype(np.float64)


def _mismatch_n_features(rank):
    X, y, _ = regression_data()
    return _node(), X[:SPLIT, :4] if rank == 0 else X[SPLIT:, :3], y[:SPLIT] if rank == 0 else y[SPLIT:]


def _regression_shard(rank):
    X, y, _ = regression_data()
    rows = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
    return X[rows], y[rows]


def _classification_shard(rank):
    X, y, _ = classification_data()
    rows = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
    return X[rows], y[rows]


def _mismatch_outputs(rank, two_columns):
    X, y = _regression_shard(rank)
    if rank == 1:
        y = np.column_stack([y, -y]) if two_columns else y[:, None]
    return _node(), X, y


def _mismatch_labels(rank):
    X, y = _classification_shard(rank)
    if rank == 0:  # integer codes of the same classes on rank 0, the strings on rank 1
        y = np.searchsorted(np.array(["ant", "bee", "cat"]), y)
    return _rkhs(), X, y


def _mismatch_warm(rank):
    from skflow import distributed

    X, y = _regression_shard(rank)
    est = _node(warm_start=True)
    if rank == 0:  # rank 0 fitted a model of its own before: it would continue it, rank 1 starts afresh
        with distributed.local(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    return est, X, y


def _mismatch_warm_parameters(rank):
    from skflow import distributed

    X, y = _regression_shard(rank)
    est = _node(warm_start=True)
    with distributed.local(), warnings.catch_warnings():  # each rank fitted a model of its own rows before
        warnings.simplefilter("ignore")
        est.fit(X, y)
    return est, X, y


def _warm_start_agrees(rank):
    X, y = _regression_shard(rank)
    est = _node()
    with warnings.catch_warnings():  # a data-parallel fit: the same model on both ranks, which both continue
        warnings.simplefilter("ignore")
        est.fit(X, y)
    return est.set_params(warm_start=True), X, y


def _empty_rank1(rank):
    X, y = _regression_shard(rank)
    return _node(), (X if rank == 0 else X[:0]), (y if rank == 0 else y[:0])


def _mismatch_feature_names(rank):
    import pandas as pd

    X, y = _regression_shard(rank)
    return _node(), (pd.DataFrame(X, columns=["a", "b", "c", "d"]) if rank == 0 else X), y


def _one_row_rank1(rank, **kw):
    X, y = _regression_shard(rank)
    return _node(**kw), (X if rank == 0 else X[:1]), (y if rank == 0 else y[:1])


#: name -> function(rank) -> (estimator, X, y): the ranks disagree (or one has no rows); every rank must raise
#: the same clear error, and the group stay usable. ``verbose_differs`` (a per-rank parameter) must fit.
def _mismatch_weights(rank):
    """Rank 0 passes sample weights, rank 1 none (the weighted fit all-reduces the weights' totals)."""
    import functools

    est, X, y = _node(), *_regression_shard(rank)
    if rank == 0:
        est.fit = functools.partial(type(est).fit, est, sample_weight=np.ones(len(y)))
    return est, X, y


MISMATCHES = {
    "mismatch_weights": _mismatch_weights,
    "mismatch_n_features": _mismatch_n_features,
    "mismatch_width": lambda rank: (_node(width=12 if rank == 0 else 16), *_regression_shard(rank)),
    "mismatch_rkhs_width": lambda rank: (_rkhs(n_features=24 if rank == 0 else 32), *_classification_shard(rank)),
    "mismatch_n_outputs": lambda rank: _mismatch_outputs(rank, True),
    "mismatch_y_ndim": lambda rank: _mismatch_outputs(rank, False),
    "mismatch_labels": _mismatch_labels,
    "mismatch_random_state": lambda rank: (_node(random_state=rank), *_regression_shard(rank)),
    "mismatch_estimator": lambda rank: ((_node() if rank == 0 else _varpro()), *_regression_shard(rank)),
    "mismatch_warm_start": _mismatch_warm,
    "mismatch_warm_parameters": _mismatch_warm_parameters,
    "random_state_none": lambda rank: (_node(random_state=None), *_regression_shard(rank)),
    "mismatch_dtype": lambda rank: (_node(dtype="float64" if rank == 0 else "float32"), *_regression_shard(rank)),
    "mismatch_feature_names": _mismatch_feature_names,
    "empty_rank1": _empty_rank1,
    "one_row_rank1": _one_row_rank1,
    "one_row_rank1_early_stopping": lambda rank: _one_row_rank1(rank, early_stopping=True),
    "one_row_rank1_minibatch": lambda rank: _one_row_rank1(rank, batch_size=16),
    "warm_start_agrees": _warm_start_agrees,
    "verbose_differs": lambda rank: (_node(verbose=rank), *_regression_shard(rank)),
    "node_after_mismatches": lambda rank: (_node(), *_regression_shard(rank)),
}


def case_data(name):
    """``X, y, X_test, split`` of a case (rank 0 holds ``X[:split]``)."""
    return _data(CASES[name][1])


def summary(est, X_test):
    """What the test compares: predictions and fitted arrays / numbers, as NumPy."""
    out = {"predict": np.asarray(est.predict(X_test))}
    if hasattr(est, "predict_proba"):
        out["proba"] = est.predict_proba(X_test)
        out["classes_"] = est.classes_
    for name in ("U_", "W_", "b_", "theta_", "features_", "outer_weights_", "y_mean_", "y_scale_", "loss_curve_",
                 "learning_rate_", "length_scale_", "alpha_", "n_iter_", "n_ranks_"):
        if hasattr(est, name):
            out[name] = np.asarray(getattr(est, name))
    return out


def _run_mismatch(name, rank):
    est, X, y = (_node(), *_regression_shard(rank)) if name == "rank1_never_fits" else MISMATCHES[name](rank)
    if name == "rank1_never_fits":
        import torch.distributed as dist

        dist.barrier()  # both ranks here: then rank 0 fits, rank 1 stays in the group but never joins the fit
        if rank == 1:
            time.sleep(float(os.environ.get("SKFLOW_TEST_PG_TIMEOUT_S", PG_TIMEOUT_S)) + 2.0)
            return {"skipped": True}
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
        return {"error": f"{type(exc).__name__}: {exc}", "type": type(exc).__name__,
                "seconds": time.perf_counter() - start}
    out = {"seconds": time.perf_counter() - start, "n_ranks_": est.n_ranks_}
    out.update(summary(est, regression_data()[2]))
    return out


def main(rank, world_size, port, out_file, names):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    # a short timeout: a collective that a rank never joins raises here within a minute instead of hanging
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=float(os.environ.get("SKFLOW_TEST_PG_TIMEOUT_S",
                                                                                     PG_TIMEOUT_S))))
    results = {}
    try:
        for name in names:
            if name in MISMATCHES or name == "rank1_never_fits":
                results[name] = _run_mismatch(name, rank)
                continue
            X, y, X_test, split = case_data(name)
            rows = slice(0, split) if rank == 0 else slice(split, None)
            est = CASES[name][0]()
            w = case_weights(name)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.fit(X[rows], y[rows], sample_weight=None if w is None else w[rows])
            except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            res = summary(est, X_test)
            clone = pickle.loads(pickle.dumps(est))
            res["pickled_handle"] = clone.flow_.data_parallel is not None or est.flow_.data_parallel is not None
            results[name] = res
    finally:
        dist.destroy_process_group()
    with open(out_file, "wb") as f:
        pickle.dump(results, f)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
         sys.argv[5:] or list(CASES) + list(MISMATCHES))

"""Hyper-parameter search on a Dask cluster through joblib's ``"dask"`` backend.

A ``GridSearchCV`` over a skflow estimator run on a ``dask.distributed.LocalCluster`` must give the same
``best_params_`` and the same cross-validation scores as the same search run locally with ``n_jobs=1``
(README, "Distributed hyperparameter search (Dask)"). Dask is an optional extra (``pip install -e ".[dask]"``,
also in ``.[test]``); without it the module is skipped.

The cluster runs its workers in separate processes, as a real cluster does: the estimators, the data and the
scores cross process boundaries by pickle, and each worker imports skflow and torch itself (a threaded
cluster would share this process's objects and test none of that). The fits are deterministic given
``random_state``. Dask's nanny starts every worker with ``OMP_NUM_THREADS=1``, so torch runs one thread per
worker with no pinning; the local search and both refits run with one torch thread as well: the same arithmetic
on both sides, and no oversubscription of the cores (torch's default of one thread per core made these small
fits 40x slower on a loaded 2-core machine). ``compile=False``: ``compile='auto'`` reuses fused kernels already
built in a process (by earlier tests in this one, never in a fresh worker), whose results agree only to rounding.
"""

import logging
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skflow import MeanFieldNODERegressor, RKHSNODEClassifier

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """A Client of a two-process LocalCluster (one thread each, no dashboard), closed after the module."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        yield client


def search_both_ways(client, search, X, y):
    """Fit a clone of ``search`` with ``n_jobs=1`` here and one with the Dask backend; return both and the
    workers that ran the Dask fits (the ConvergenceWarnings of the short fits are silenced on both sides:
    scikit-learn passes the warning filters on to the workers)."""
    local = clone(search).set_params(n_jobs=1)
    remote = clone(search).set_params(n_jobs=None)  # the backend's default: every worker thread of the cluster
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the workers (here for the local search and both refits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            local.fit(X, y)
            with distributed.get_task_stream(client) as tasks, joblib.parallel_config(backend="dask"):
                remote.fit(X, y)
    finally:
        torch.set_num_threads(threads)
    return local, remote, {task["worker"] for task in tasks.data}


def assert_same_search(local, remote):
    assert remote.best_params_ == local.best_params_
    assert remote.best_index_ == local.best_index_
    for key in ("mean_test_score", "std_test_score", *(f"split{i}_test_score" for i in range(local.n_splits_))):
        np.testing.assert_allclose(remote.cv_results_[key], local.cv_results_[key], rtol=1e-10, err_msg=key)
    assert remote.best_score_ == pytest.approx(local.best_score_, rel=1e-10)


def test_node_regressor_grid_search_on_dask_matches_local(client, regression_data):
    X, y, _, _ = regression_data
    est = MeanFieldNODERegressor(n_layers=3, width=32, max_iter=60, device="cpu", compile=False, random_state=0)
    search = GridSearchCV(est, {"output_scale": [1.0, 4.0], "feature_scale": [0.25, 0.5]}, cv=3)
    local, remote, workers = search_both_ways(client, search, X, y)
    assert workers and workers <= set(client.scheduler_info()["workers"])  # the fits ran on the cluster
    assert_same_search(local, remote)
    assert len(local.cv_results_["params"]) == 4


def test_rkhs_classifier_stratified_grid_search_on_dask_matches_local(client, classification_data):
    X, y, _, _ = classification_data
    est = RKHSNODEClassifier(n_layers=3, n_features=64, max_iter=20, device="cpu", compile=False, random_state=0)
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    search = GridSearchCV(est, {"output_scale": [0.3, 1.0], "n_layers": [2, 3]}, cv=cv)
    local, remote, workers = search_both_ways(client, search, X, y)
    assert workers and workers <= set(client.scheduler_info()["workers"])
    assert_same_search(local, remote)

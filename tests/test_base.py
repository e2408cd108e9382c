"""The shared estimator base (skflow._base), exercised through the three estimators."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skflow import MeanFieldNODERegressor, RKHSNODEClassifier, VarProSHLRegressor
from skflow._base import resolve_device, resolve_dtype
from skflow.flows.node import MeanFieldSHLFlow


@pytest.fixture(scope="module")
def data():
    X, y = make_friedman1(n_samples=200, noise=0.5, random_state=1)
    return StandardScaler().fit_transform(X), y


def _node(**kw):
    params = dict(n_layers=3, width=32, max_iter=40, early_stopping=False, device="cpu", random_state=0)
    params.update(kw)
    return MeanFieldNODERegressor(**params)


def test_resolve_device_and_dtype():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_dtype("float64") == torch.float64 and resolve_dtype("float32") == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises((ValueError, RuntimeError), match="(?i)cuda"):
            resolve_device("cuda")


def test_max_iter_warns_and_tol_stops(data):
    X, y = data
    with pytest.warns(ConvergenceWarning, match="max_iter=40"):
        m = _node().fit(X, y)
    assert m.stop_reason_ == "max_iter" and m.n_iter_ == 40
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        m = _node(max_iter=2000, tol=0.5, n_iter_no_change=3).fit(X, y)  # a loose tolerance stops early
    assert m.stop_reason_ == "converged" and m.n_iter_ < 2000


def test_early_stopping_restores_best_validation_parameters(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _node(early_stopping=True, validation_fraction=0.2, max_iter=300, n_iter_no_change=10).fit(X, y)
    val = m.history_["val_risk"]
    assert val.shape == (m.n_iter_,)
    # the parameters kept are those after the best validation step
    best = int(np.argmin(val))
    assert m.best_validation_risk_ == pytest.approx(val[best])
    assert m.stop_reason_ in ("converged", "max_iter")


def test_warm_start_continues_the_flow(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = _node(max_iter=40, tol=0).fit(X, y)
        warm = _node(max_iter=20, tol=0, warm_start=True).fit(X, y)
        warm.fit(X, y)
    assert warm.n_iter_ == 40
    np.testing.assert_allclose(warm.loss_curve_, full.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(warm.flow_time_, full.flow_time_)
    np.testing.assert_allclose(warm.predict(X), full.predict(X), rtol=1e-10)


def test_keyboard_interrupt_leaves_a_usable_model(data, monkeypatch):
    X, y = data
    calls = {"n": 0}
    original = MeanFieldSHLFlow.step

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(MeanFieldSHLFlow, "step", interrupted)
    with pytest.warns(UserWarning, match="interrupted"):
        m = _node(max_iter=100).fit(X, y)
    assert m.stop_reason_ == "interrupted"
    assert m.n_iter_ == 24  # every complete iteration, synchronised or not
    assert m.loss_curve_.shape == (24,)
    assert np.all(np.isfinite(m.predict(X)))


def test_verbose_prints_progress(data, capsys):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _node(max_iter=200, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "MeanFieldNODERegressor" in line]
    assert len(lines) == 3  # iterations 100, 200 and the final line
    assert "risk" in lines[0] and "P-L ratio" in lines[0] and "(done)" in lines[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _node(max_iter=40, verbose=0).fit(X, y)
    assert capsys.readouterr().out == ""


def test_chunked_predict_matches_unchunked(data, monkeypatch):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _node().fit(X, y)
    full = m.predict(X)
    monkeypatch.setattr(type(m), "_predict_chunk", lambda self: 7)
    np.testing.assert_allclose(m.predict(X), full, rtol=1e-13)
    with pytest.raises(ValueError, match="0 sample"):
        m.predict(X[:0])


@pytest.mark.parametrize(
    "est",
    [
        MeanFieldNODERegressor(n_layers=2, width=16, max_iter=5, device="cpu"),
        RKHSNODEClassifier(n_layers=2, n_features=32, max_iter=3, device="cpu"),
        VarProSHLRegressor(width=16, max_iter=5, device="cpu"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_common_fitted_attributes(est, data):
    X, y = data
    target = (y > np.median(y)).astype(int) if isinstance(est, RKHSNODEClassifier) else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, target)
    assert est.device_ == torch.device("cpu") and est.n_features_in_ == X.shape[1]
    n = est.n_iter_
    assert n > 0 and est.loss_curve_.shape == (n,)
    assert est.loss_curve_.dtype == np.float64
    assert hasattr(est, "stop_reason_")

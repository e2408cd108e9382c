"""Every fit is a transaction: nothing a user does can lose a fitted model.

Each test is one adversarial probe, run on every estimator it applies to: a failed refit leaves the previous model
exactly as it was, warm starts check compatibility first, divergence restores the best parameters seen, extreme
magnitudes give a clear error or finite predictions, diagnostics never break a fit, and memory is budgeted.
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris, make_friedman1
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

import skflow._base
import skflow.node
from skflow import (
    DiagnosticWarning,
    DivergenceWarning,
    FitInterruptedWarning,
    IncompatibleWarmStartError,
    MeanFieldNODERegressor,
    RKHSNODEClassifier,
    VarProSHLRegressor,
)
from skflow.flows.node import MeanFieldSHLFlow
from skflow.flows.rkhs import RKHSFlow
from skflow.flows.varpro import VarProFlow


@pytest.fixture(scope="module")
def regression():
    X, y = make_friedman1(n_samples=120, noise=0.5, random_state=0)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def classification():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


FACTORIES = {
    "node": lambda **kw: MeanFieldNODERegressor(**{**dict(n_layers=3, width=24, max_iter=15, early_stopping=False,
                                                           tol=0, device="cpu", random_state=0), **kw}),
    "rkhs": lambda **kw: RKHSNODEClassifier(**{**dict(n_layers=2, n_features=64, max_iter=5, tol=0, device="cpu",
                                                       random_state=0), **kw}),
    "varpro": lambda **kw: VarProSHLRegressor(**{**dict(width=32, max_iter=15, tol=0, device="cpu",
                                                         random_state=0), **kw}),
}
FLOWS = {"node": MeanFieldSHLFlow, "rkhs": RKHSFlow, "varpro": VarProFlow}
ALL = list(FACTORIES)


@pytest.fixture
def setup(request, regression, classification):
    name = request.param
    X, y = classification if name == "rkhs" else regression
    return name, FACTORIES[name], X, y


def _fit_quietly(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def _output(est, X):
    return est.decision_function(X) if hasattr(est, "decision_function") else est.predict(X)


def _state(est):
    """Every fitted attribute and the predictions: what must survive a failed refit."""
    return {k: pickle.dumps(v) for k, v in vars(est).items() if k.endswith("_") and k != "flow_"}


def _assert_unchanged(est, before, X, pred):
    assert _state(est) == before
    np.testing.assert_array_equal(_output(est, X), pred)


def _failed_refit(est, X, y, exc, match, **params):
    before, pred = _state(est), _output(est, X)
    est.set_params(**params)
    with pytest.raises(exc, match=match):
        _fit_quietly(est, *_refit_data(X, y))
    _assert_unchanged(est, before, X, pred)


def _refit_data(X, y):
    return X, y


# ---------------------------------------------------------------------- a failed refit loses nothing
@pytest.mark.parametrize("setup", ALL, indirect=True)
def test_refit_too_small_for_early_stopping_keeps_the_model(setup):
    name, make, X, y = setup
    est = _fit_quietly(make(), X, y)
    before, pred = _state(est), _output(est, X)
    est.set_params(early_stopping=True)
    with pytest.raises(ValueError, match="at least 2 samples|least populated class|2 classes"):
        _fit_quietly(est, X[:1], y[:1] if name == "rkhs" else [100.0])
    _assert_unchanged(est, before, X, pred)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("setup", ALL, indirect=True)
def test_refit_on_missing_cuda_keeps_the_model(setup):
    name, make, X, y = setup
    est = _fit_quietly(make(), X, y)
    _failed_refit(est, X, y, ValueError, "CUDA is not available", device="cuda")
    est.set_params(device="cpu")  # the old model still accepts its own inputs
    assert _output(est, X).shape[0] == X.shape[0]


@pytest.mark.parametrize("setup", ALL, indirect=True)
def test_unknown_device_string_is_a_parameter_error(setup):
    name, make, X, y = setup
    est = _fit_quietly(make(), X, y)
    _failed_refit(est, X, y, InvalidParameterError, "'device' parameter", device="bogus")


@pytest.mark.parametrize("setup", ALL, indirect=True)
def test_failed_diagnostic_leaves_a_fitted_model(setup, monkeypatch):
    """A diagnostic that raises gives NaN and a DiagnosticWarning; the model is fitted and predicts."""
    name, make, X, y = setup

    def broken(*args, **kwargs):
        raise torch.linalg.LinAlgError("eigh did not converge")

    for module in (skflow.node, skflow.rkhs, skflow.flows.varpro):
        for attr in ("kernel_lambda_min", "exact_kernel_lambda_min", "top_eigenvalues"):
            if hasattr(module, attr):
                monkeypatch.setattr(module, attr, broken)
    with pytest.warns(DiagnosticWarning, match="could not be computed"):
        est = make().fit(X, y)
    diag = {"node": "exact_kernel_lambda_min_", "rkhs": "exact_kernel_lambda_min_", "varpro": "kernel_spectrum_"}
    assert np.all(np.isnan(getattr(est, diag[name])))
    assert np.all(np.isfinite(_output(est, X)))


# ---------------------------------------------------------------------- warm start checks compatibility first
@pytest.mark.parametrize("setup", ALL, indirect=True)
def test_warm_start_with_other_n_features_is_refused(setup):
    name, make, X, y = setup
    est = _fit_quietly(make(warm_start=True), X, y)
    before, pred = _state(est), _output(est, X)
    for X_new in (np.c_[X, X[:, :1]], np.c_[X, X, X]):
        with pytest.raises(IncompatibleWarmStartError, match="n_features_in_"):
            _fit_quietly(est, X_new, y)
        _assert_unchanged(est, before, X, pred)


@pytest.mark.parametrize("setup", ["node", "varpro"], indirect=True)
def test_warm_start_with_other_n_outputs_is_refused(setup):
    name, make, X, y = setup
    est = _fit_quietly(make(warm_start=True), X, y)
    before, pred = _state(est), _output(est, X)
    with pytest.raises(IncompatibleWarmStartError, match="n_outputs: 1 -> 2"):
        _fit_quietly(est, X, np.c_[y, y])
    _assert_unchanged(est, before, X, pred)


@pytest.mark.parametrize("setup", ["rkhs"], indirect=True)
def test_warm_start_with_other_classes_is_refused(setup):
    name, make, X, y = setup
    est = _fit_quietly(make(warm_start=True), X, y)
    before, pred = _state(est), _output(est, X)
    with pytest.raises(IncompatibleWarmStartError, match="classes_"):
        _fit_quietly(est, X[y < 2], y[y < 2])
    _assert_unchanged(est, before, X, pred)


@pytest.mark.parametrize(
    "name,param,value",
    [("node", "width", 48), ("node", "n_layers", 4), ("node", "output_scale", 2.0),
     ("rkhs", "n_features", 32), ("rkhs", "n_layers", 3), ("rkhs", "length_scale", 2.0),
     ("varpro", "width", 16), ("varpro", "activation", "tanh"), ("varpro", "alpha", 0.1)],
)
def test_warm_start_with_other_architecture_is_refused(name, param, value, regression, classification):
    X, y = classification if name == "rkhs" else regression
    est = _fit_quietly(FACTORIES[name](warm_start=True), X, y)
    before, pred = _state(est), _output(est, X)
    est.set_params(**{param: value})
    with pytest.raises(IncompatibleWarmStartError, match=param):
        _fit_quietly(est, X, y)
    _assert_unchanged(est, before, X, pred)
    est.set_params(warm_start=False)  # a cold fit with the new architecture is fine
    assert _fit_quietly(est, X, y).n_iter_ > 0


# ---------------------------------------------------------------------- divergence
@pytest.mark.parametrize("setup", ALL, indirect=True)
def test_divergence_restores_the_lowest_risk_parameters(setup):
    name, make, X, y = setup
    huge = {"node": 1e6, "rkhs": 1e12, "varpro": 1e6}[name]
    # full-batch VarPro cannot diverge: with the exact projection its risk stays below the risk at u = argmin f
    # (0.5 mean y^2), whatever the features do; plain joint gradient descent ('gd') can
    extra = {"solver": "gd"} if name == "varpro" else {}
    with pytest.warns(DivergenceWarning, match="smaller learning_rate"):
        est = make(learning_rate=huge, max_iter=30, **extra).fit(X, y)
    assert est.stop_reason_ == "diverged"
    assert np.all(np.isfinite(_output(est, X)))
    # the model kept is the best one seen, never worse than the initialisation
    assert est.score(X, y) >= (1.0 / 3 - 1e-9 if name == "rkhs" else -1e-6)


def test_finite_but_exploding_risk_is_divergence(classification):
    """Cross-entropy stays finite (logits ~1e17) at a huge step: still divergence, not a 'fit'."""
    X, y = classification
    with pytest.warns(DivergenceWarning, match="grew above"):
        est = FACTORIES["rkhs"](learning_rate=1e12, max_iter=30).fit(X, y)
    assert est.stop_reason_ == "diverged"
    assert est.loss_curve_.size == 0 or est.loss_curve_.max() <= 1e4 * np.log(3)
    assert np.all(np.isfinite(est.decision_function(X)))


# ---------------------------------------------------------------------- extreme magnitudes
@pytest.mark.parametrize("setup", ["node", "varpro"], indirect=True)
@pytest.mark.parametrize("scale", [1e154, 1e300])
def test_huge_targets_give_finite_predictions(setup, scale):
    name, make, X, y = setup
    pred = _fit_quietly(make(), X, y * scale).predict(X)
    assert np.all(np.isfinite(pred))
    assert np.corrcoef(pred / scale, y)[0, 1] > 0.5


@pytest.mark.parametrize("setup", ["node"], indirect=True)
def test_huge_unscaled_targets_are_a_clear_error(setup):
    name, make, X, y = setup
    with pytest.raises(ValueError, match="overflow.*scale_targets=True"):
        make(scale_targets=False).fit(X, y * 1e300)


@pytest.mark.parametrize("setup", ALL, indirect=True)
def test_huge_inputs_are_a_clear_error_and_keep_the_model(setup):
    name, make, X, y = setup
    est = _fit_quietly(make(), X, y)
    before, pred = _state(est), _output(est, X)
    with pytest.raises(ValueError, match="overflow.*Standardise"):
        _fit_quietly(est, X * 1e155, y)
    _assert_unchanged(est, before, X, pred)
    with pytest.raises(ValueError, match="float32"):
        make(dtype="float32").fit(X * 1e20, y)


# ---------------------------------------------------------------------- predict uses the fitted dtype and device
@pytest.mark.parametrize("setup", ALL, indirect=True)
def test_predict_uses_the_fitted_dtype(setup):
    name, make, X, y = setup
    est = _fit_quietly(make(), X, y)
    pred = _output(est, X)
    est.set_params(dtype="float32", device="bogus")
    np.testing.assert_array_equal(_output(est, X), pred)


@pytest.mark.parametrize("setup", ALL, indirect=True)
def test_predict_chunks_come_from_a_memory_budget(setup):
    name, make, X, y = setup
    narrow = _fit_quietly(make(), X, y)
    wide_param = {"node": "width", "rkhs": "n_features", "varpro": "width"}[name]
    wide = _fit_quietly(make(**{wide_param: 8 * getattr(narrow, wide_param)}), X, y)
    assert wide._predict_chunk() < narrow._predict_chunk() / 4
    rows = wide._predict_chunk()
    assert rows * wide.flow_.bytes_per_row(training=False) <= skflow._base.PREDICT_MEMORY_BUDGET


# ---------------------------------------------------------------------- interrupts
@pytest.mark.parametrize("setup", ALL, indirect=True)
@pytest.mark.parametrize("at_step", [1, 3])
def test_interrupt_in_the_first_steps_keeps_a_consistent_model(setup, at_step, monkeypatch):
    name, make, X, y = setup
    original = FLOWS[name].step
    calls = {"n": 0}

    def step(self, *args):
        calls["n"] += 1
        if calls["n"] == at_step:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(FLOWS[name], "step", step)
    est = make(batch_size=None, max_iter=10)
    with pytest.warns(FitInterruptedWarning, match=f"after {at_step - 1} complete iterations"):
        est.fit(X, y)
    assert est.stop_reason_ == "interrupted"
    assert est.n_iter_ == at_step - 1 and est.loss_curve_.shape == (at_step - 1,)
    # a usable model: at least as good as the initialisation, and consistent (VarPro: u = u*(features))
    floor = (1.0 / 3 if name == "rkhs" else 0.0) - 1e-9
    assert est.score(X, y) >= floor if at_step == 1 else est.score(X, y) > floor


@pytest.mark.parametrize("setup", ["node"], indirect=True)
def test_interrupt_during_diagnostics_commits_the_model(setup, monkeypatch):
    name, make, X, y = setup

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(skflow.node, "conditional_wasserstein", interrupted)
    with pytest.warns(FitInterruptedWarning, match="diagnostics"):
        est = make().fit(X, y)
    assert est.n_iter_ == 15 and np.isnan(est.cot_distance_) and np.isnan(est.kernel_lambda_min_)
    assert np.all(np.isfinite(est.predict(X)))


# ---------------------------------------------------------------------- memory
@pytest.mark.parametrize("setup", ALL, indirect=True)
def test_training_that_cannot_fit_in_memory_fails_before_allocating(setup, monkeypatch):
    name, make, X, y = setup
    est = _fit_quietly(make(), X, y)
    before, pred = _state(est), _output(est, X)
    monkeypatch.setattr(skflow._base, "available_memory", lambda device: 1000)
    with pytest.raises(MemoryError, match="GiB.*batch_size.*float32"):
        _fit_quietly(est, X, y)
    _assert_unchanged(est, before, X, pred)


def test_cot_distance_above_the_budget_is_a_named_subsample_estimate(regression, monkeypatch):
    X, y = regression
    exact = _fit_quietly(FACTORIES["node"](), X, y)
    assert exact.cot_method_ == "exact" and exact.convergence_report_["cot_method"] == "exact"
    monkeypatch.setattr(MeanFieldNODERegressor, "_cot_max_particles", 12)
    est = _fit_quietly(FACTORIES["node"](), X, y)
    assert est.cot_method_ == "subsample(12)" and est.convergence_report_["cot_method"] == "subsample(12)"
    # the estimate is of the same order as the exact value, and bounded by the paired displacement
    assert 0.2 * exact.cot_distance_ < est.cot_distance_ < 5 * exact.cot_distance_


# ---------------------------------------------------------------------- a step size that picks itself
@pytest.mark.parametrize(
    "name,params",
    [("node", dict(output_scale=16.0)), ("node", dict(output_scale=0.5)), ("node", dict(n_layers=24, width=8)),
     ("node", dict(width=512, n_layers=1)), ("rkhs", dict(output_scale=5.0)), ("rkhs", dict(batch_size=None)),
     ("varpro", dict(alpha=1e-5)), ("varpro", dict(solver="gd"))],
)
def test_auto_learning_rate_does_not_diverge(name, params, regression, classification):
    """learning_rate='auto' measures a stable step on the data: no divergence whatever the scale or shape."""
    X, y = classification if name == "rkhs" else regression
    est = FACTORIES[name](learning_rate="auto", max_iter=40, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        est.fit(X, y)
    assert est.learning_rate_ > 0 and est.stop_reason_ != "diverged"
    assert est.loss_curve_[-1] < est.loss_curve_[0]
    # a fixed float is used as it is
    assert FACTORIES[name](learning_rate=0.001, max_iter=2, **params).fit(X, y).learning_rate_ == 0.001


def test_auto_learning_rate_shrinks_with_the_output_scale(regression):
    """The flow's stiffness grows like output_scale^2 (Prop. II.6.1): so must the stable step shrink."""
    X, y = regression
    lr = {a: _fit_quietly(FACTORIES["node"](learning_rate="auto", max_iter=1, output_scale=a), X, y).learning_rate_
          for a in (4.0, 16.0)}
    assert 4 <= lr[4.0] / lr[16.0] <= 64


@pytest.mark.parametrize("setup", ALL, indirect=True)
def test_allocator_failure_is_a_memory_error_with_remedies(setup, monkeypatch):
    """A model too large to allocate gives a MemoryError naming the remedies, not the allocator's raw message."""
    name, make, X, y = setup
    est = _fit_quietly(make(), X, y)
    before, pred = _state(est), _output(est, X)

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 384000000000 bytes.")

    monkeypatch.setattr(type(est), "_make_flow", no_memory)
    with pytest.raises(MemoryError, match="not enough memory to build the model.*smaller width.*float32"):
        _fit_quietly(est, X, y)
    _assert_unchanged(est, before, X, pred)
    # other runtime errors pass through unchanged
    monkeypatch.setattr(type(est), "_make_flow", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="^other$"):
        _fit_quietly(est, X, y)

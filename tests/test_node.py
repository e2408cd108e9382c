"""Estimator tests for skflow.MeanFieldNODERegressor."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_friedman1
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skflow import MeanFieldNODERegressor, SingularKernelWarning
from skflow.diagnostics import conditional_wasserstein, kernel_lambda_min


def _expected_failed_checks(estimator):
    """Checks of scikit-learn this estimator is expected to fail, with the reason.

    None at present: every check passes. The callable stays so that a future expected failure must come
    with a written reason.
    """
    return {}


def _small(**kw):
    """A configuration small enough for the estimator checks (dozens of fits) to run in seconds."""
    params = dict(n_layers=3, width=32, max_iter=60, device="cpu")
    params.update(kw)
    return MeanFieldNODERegressor(**params)


@parametrize_with_checks(
    [_small(), _small(early_stopping=False, solver="midpoint", activation="tanh", feature_init="student")],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularKernelWarning)
        check(estimator)


def _quiet_fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y)


@pytest.fixture(scope="module")
def friedman():
    X, y = make_friedman1(n_samples=240, noise=0.3, random_state=0)
    X = StandardScaler().fit_transform(X)
    return X[:160], y[:160], X[160:], y[160:]


def test_fits_friedman_and_exposes_diagnostics(friedman):
    X, y, Xt, yt = friedman
    m = _quiet_fit(MeanFieldNODERegressor(n_layers=4, width=256, max_iter=150, early_stopping=False,
                                          random_state=0, device="cpu"), X, y)
    assert m.score(Xt, yt) > 0.75
    S, M, D = 4, 256, X.shape[1] + 1
    assert m.U_.shape == (S, M, D) and m.W_.shape == (S, M, D) and m.b_.shape == (S, M)
    n = m.n_iter_
    for name in ("loss_curve_", "flow_time_", "pl_ratio_curve_", "cot_displacement_curve_"):
        arr = getattr(m, name)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float64 and arr.shape == (n,), name
    np.testing.assert_allclose(m.flow_time_, m.learning_rate * np.arange(n))
    assert m.pl_constant_ == pytest.approx(m.pl_ratio_curve_.min())
    assert m.loss_curve_[-1] < 0.1 * m.loss_curve_[0]
    # diagnostics agree with independent computations
    assert m.cot_distance_ == pytest.approx(conditional_wasserstein((m.U_, m.W_, m.b_), _initial(m)))
    # the curve is recorded at the start of each iteration (like loss_curve_); the final displacement is
    # an upper bound of the exact distance (the identity pairing is one admissible coupling)
    assert 0 < m.cot_distance_ <= float(m.flow_.displacement()) * (1 + 1e-12)
    assert m.cot_displacement_curve_[-1] <= float(m.flow_.displacement()) + 0.1
    Z = np.hstack([X, np.zeros((X.shape[0], 1))])  # the lifted inputs z(0) = (x, 0)
    assert m.exact_kernel_lambda_min_ == pytest.approx(kernel_lambda_min(Z, "gaussian", m.feature_scale))
    assert m.kernel_lambda_min_ > 0  # M = 256 >= N = 160: the finite-width kernel is non-singular
    rep = m.convergence_report_
    for key in ("observed_rate", "pl_constant", "pl_bound_holds", "kernel_lambda_min", "kernel_rate",
                "distance_travelled", "local_pl_condition"):
        assert key in rep
    assert rep["kernel_rate"] == pytest.approx(2 * m.output_scale**2 * m.kernel_lambda_min_ / 160)


def _initial(model):
    P = model.flow_.initial_particles().detach().cpu().numpy()
    return P


def test_singular_kernel_warns_when_width_below_n(friedman):
    X, y, _, _ = friedman
    with pytest.warns(SingularKernelWarning, match="width M=16 is below the 160 points"):
        m = MeanFieldNODERegressor(n_layers=2, width=16, max_iter=5, early_stopping=False, tol=0,
                                   device="cpu", random_state=0).fit(X, y)
    assert m.kernel_lambda_min_ == 0.0 and np.all(m.layer_kernel_lambda_min_ == 0)
    assert m.exact_kernel_lambda_min_ > 0


def test_kernel_lambda_min_positive_and_close_to_closed_form_when_wide():
    rng = np.random.RandomState(0)
    X = rng.randn(20, 2)
    y = rng.randn(20)
    m = MeanFieldNODERegressor(n_layers=2, width=4000, feature_scale=4.0, max_iter=1, tol=0,
                               early_stopping=False, device="cpu", random_state=0).fit(X, y)
    assert m.kernel_lambda_min_ == pytest.approx(m.exact_kernel_lambda_min_, rel=0.1)


def test_multi_output(friedman):
    X, y, _, _ = friedman
    Y = np.column_stack([y, -2 * y + 1])
    m = _quiet_fit(MeanFieldNODERegressor(n_layers=3, width=64, max_iter=80, random_state=0, device="cpu"), X, Y)
    P = m.predict(X)
    assert P.shape == (160, 2)
    assert m.U_.shape[2] == X.shape[1] + 2
    assert np.corrcoef(P[:, 0], P[:, 1])[0, 1] < -0.99  # the two outputs share the learned structure
    m1 = _quiet_fit(clone(m), X, y)
    assert m1.predict(X).shape == (160,)


def test_random_state_reproducibility_and_clone(friedman):
    X, y, Xt, _ = friedman
    a = _quiet_fit(_small(random_state=3), X, y)
    b = _quiet_fit(clone(a), X, y)
    np.testing.assert_array_equal(a.predict(Xt), b.predict(Xt))
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)
    c = _quiet_fit(_small(random_state=4), X, y)
    assert not np.allclose(a.predict(Xt), c.predict(Xt))
    assert "random_state" in clone(a).get_params() and not hasattr(clone(a), "flow_")


def test_pickle_round_trip(friedman):
    X, y, Xt, _ = friedman
    m = _quiet_fit(_small(random_state=0), X, y)
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m.predict(Xt), m2.predict(Xt))
    assert m2.device_ == torch.device("cpu")
    for name in ("loss_curve_", "U_", "convergence_report_"):
        assert name in m2.__dict__


def test_pickled_on_a_gpu_loads_on_the_cpu(friedman, monkeypatch):
    """A model whose device_ is CUDA unpickles onto the CPU when no GPU is present (simulated here)."""
    X, y, Xt, _ = friedman
    m = _quiet_fit(_small(random_state=0), X, y)
    expected = m.predict(Xt)
    m.device_ = torch.device("cuda", 0)  # as if it had been trained on a GPU: __getstate__ moves tensors
    blob = pickle.dumps(m)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    m2 = pickle.loads(blob)
    assert m2.device_ == torch.device("cpu")
    np.testing.assert_array_equal(m2.predict(Xt), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trained_on_gpu_pickles_to_cpu(friedman):
    X, y, Xt, _ = friedman
    m = _quiet_fit(_small(random_state=0, device="cuda"), X, y)
    assert m.device_.type == "cuda"
    blob = pickle.dumps(m)
    m2 = pickle.loads(blob)
    np.testing.assert_allclose(m2.predict(Xt), m.predict(Xt), rtol=1e-10)
    state = m.__getstate__()
    assert all(t.device.type == "cpu" for t in state["flow_"].parameters())
    cpu = _quiet_fit(_small(random_state=0, device="cpu"), X, y)
    np.testing.assert_allclose(cpu.predict(Xt), m.predict(Xt), rtol=1e-6, atol=1e-8)


def test_pipeline_in_grid_search_with_two_jobs(friedman):
    X, y, Xt, yt = friedman
    pipe = Pipeline([("scale", StandardScaler()), ("node", _small(random_state=0))])
    grid = GridSearchCV(pipe, {"node__output_scale": [1.0, 4.0], "node__feature_scale": [0.25, 0.5]}, cv=2,
                        n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid.fit(X, y)
    assert set(grid.best_params_) == {"node__output_scale", "node__feature_scale"}
    assert grid.score(Xt, yt) > 0.3


def test_feature_names_in(friedman):
    pd = pytest.importorskip("pandas")
    X, y, _, _ = friedman
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    m = _quiet_fit(_small(random_state=0), df, y)
    assert m.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(m.feature_names_in_, df.columns)


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), np.array([1.0, 2.0]), "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), np.array([1.0, 2.0]), "infinity"),
        (np.zeros((0, 3)), np.zeros(0), "0 sample"),
        (np.arange(5.0), np.arange(5.0), "Expected 2D array"),
        (np.ones((3, 2)), np.array(["a", "b", "c"]), "numeric"),
        (np.ones((3, 2)), np.array([1.0, np.nan, 2.0]), "NaN"),
        (np.ones((3, 2)), np.ones(4), "inconsistent numbers of samples"),
    ],
)
def test_bad_input_gives_clear_errors(X, y, match):
    m = _small()
    with pytest.raises(ValueError, match=match):
        m.fit(X, y)
    assert not hasattr(m, "flow_") and not hasattr(m, "n_features_in_")


def test_bad_input_leaves_a_fitted_model_untouched(friedman):
    X, y, Xt, _ = friedman
    m = _quiet_fit(_small(random_state=0), X, y)
    before = m.predict(Xt)
    with pytest.raises(ValueError, match="NaN"):
        m.fit(np.full_like(X, np.nan), y)
    with pytest.raises(ValueError):
        m.fit(X, np.array(["a"] * len(y)))
    np.testing.assert_array_equal(m.predict(Xt), before)
    assert m.n_features_in_ == X.shape[1]


def test_wrong_number_of_features_at_predict(friedman):
    X, y, _, _ = friedman
    m = _quiet_fit(_small(), X, y)
    with pytest.raises(ValueError, match="X has 3 features, but MeanFieldNODERegressor is expecting 10"):
        m.predict(X[:, :3])


def test_huge_learning_rate_is_caught_as_divergence(friedman):
    from skflow import DivergenceWarning

    X, y, Xt, _ = friedman
    m = MeanFieldNODERegressor(n_layers=3, width=32, learning_rate=1e4, max_iter=50, early_stopping=False,
                               device="cpu", random_state=0)
    with pytest.warns(DivergenceWarning, match="smaller learning_rate"):
        m.fit(X, y)
    assert m.stop_reason_ == "diverged"
    assert np.all(np.isfinite(m.loss_curve_)) and m.n_iter_ < 50
    assert np.all(np.isfinite(m.predict(Xt)))  # the last finite parameters were restored
    assert np.all(np.isfinite(m.U_))


def test_invalid_parameters_are_rejected(friedman):
    X, y, _, _ = friedman
    for bad in (dict(width=0), dict(solver="heun"), dict(activation="sigmoid"), dict(learning_rate=-1.0),
                dict(feature_init="uniform"), dict(dtype="float16")):
        with pytest.raises(ValueError):
            _small(**bad).fit(X, y)


@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
def test_solvers_agree_for_deep_nets(solver, friedman):
    """All integrators discretise the same ODE: for S large they train to the same risk curve."""
    X, y, _, _ = friedman
    kw = dict(n_layers=16, width=64, max_iter=30, tol=0, early_stopping=False, device="cpu", random_state=0)
    ref = _quiet_fit(MeanFieldNODERegressor(**kw), X, y)
    m = _quiet_fit(MeanFieldNODERegressor(solver=solver, **kw), X, y)
    np.testing.assert_allclose(m.loss_curve_, ref.loss_curve_, rtol=0.02)


def test_float32_option(friedman):
    X, y, Xt, _ = friedman
    kw = dict(n_layers=3, width=64, max_iter=40, tol=0, early_stopping=False, device="cpu", random_state=0)
    m64 = _quiet_fit(MeanFieldNODERegressor(**kw), X, y)
    m32 = _quiet_fit(MeanFieldNODERegressor(dtype="float32", **kw), X, y)
    assert m32.flow_.U.dtype == torch.float32 and m32.U_.dtype == np.float64
    np.testing.assert_allclose(m32.predict(Xt), m64.predict(Xt), rtol=1e-3, atol=1e-3)


def test_minibatch_option(friedman):
    X, y, Xt, yt = friedman
    m = _quiet_fit(MeanFieldNODERegressor(n_layers=3, width=64, batch_size=32, max_iter=30, early_stopping=False,
                                          device="cpu", random_state=0), X, y)
    assert m.n_iter_ == 30
    np.testing.assert_allclose(m.flow_time_, m.learning_rate * 5 * np.arange(30))  # 5 steps per epoch
    assert m.score(Xt, yt) > 0.5


def test_frozen_features(friedman):
    X, y, _, _ = friedman
    m = _quiet_fit(MeanFieldNODERegressor(n_layers=2, width=32, max_iter=10, train_features=False,
                                          device="cpu", random_state=0), X, y)
    W0 = m.flow_.W0.cpu().numpy()
    np.testing.assert_array_equal(m.W_, W0)


def test_relu_warns_outside_theory(friedman):
    X, y, _, _ = friedman
    with pytest.warns(UserWarning, match="outside the theory"):
        _small(activation="relu", max_iter=2).fit(X, y)

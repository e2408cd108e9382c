"""Promises that hold in threads and with users' modules (issue 22): no fit reads or writes torch's global state,
a user's module is validated before anything is trained, targets at any scale are standardised, displays say
what they support and work at the edges, one compile-fallback warning per fit, prediction chunks within budget.
"""

import concurrent.futures
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_friedman1
from sklearn.preprocessing import StandardScaler
from torch import nn

from skflow import VarProNetClassifier, VarProNetRegressor

SMALL = dict(module_kwargs={"hidden_layer_sizes": (16,)}, max_iter=4, tol=0, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def friedman():
    X, y = make_friedman1(n_samples=200, noise=0.3, random_state=0)
    return StandardScaler().fit_transform(X), y


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def _state(est):
    return {k: pickle.dumps(v) for k, v in vars(est).items() if k.endswith("_") and k not in ("flow_", "module_")}


class DropoutMLP(nn.Module):
    """A module whose train-mode forward draws random numbers (dropout)."""

    def __init__(self, n_features_in, width=16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features_in, width), nn.Tanh(), nn.Dropout(0.2))

    def forward(self, X):
        return self.net(X)


# ---------------------------------------------------------------------------------------------- no global state
@pytest.mark.parametrize("module", [None, DropoutMLP])
def test_a_fit_leaves_the_global_rng_and_default_dtype_as_they_were(friedman, module):
    X, y = friedman
    params = dict(SMALL) if module is None else {**SMALL, "module": module, "module_kwargs": None}
    before = torch.random.get_rng_state()
    dtype = torch.get_default_dtype()
    _fit(VarProNetRegressor(**params), X, y)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.get_default_dtype() == dtype


def test_global_seed_and_default_dtype_do_not_change_the_model(friedman):
    X, y = friedman
    ref = _fit(VarProNetRegressor(**SMALL), X, y)
    previous = torch.get_default_dtype()
    try:
        torch.manual_seed(123)
        torch.set_default_dtype(torch.float32 if previous == torch.float64 else torch.float64)
        other = _fit(VarProNetRegressor(**SMALL), X, y)
        assert torch.get_default_dtype() != previous  # the user's setting survives the fit
    finally:
        torch.set_default_dtype(previous)
    np.testing.assert_array_equal(other.coef_, ref.coef_)
    np.testing.assert_array_equal(other.predict(X), ref.predict(X))


def test_default_dtype_is_restored_when_the_module_fails_to_build(friedman):
    X, y = friedman

    def broken(n_features_in):
        raise RuntimeError("user's bug")

    dtype = torch.get_default_dtype()
    with pytest.raises(RuntimeError, match="user's bug"):
        VarProNetRegressor(broken, dtype="float32", device="cpu").fit(X, y)
    assert torch.get_default_dtype() == dtype


def test_other_estimators_ignore_the_global_rng_and_default_dtype(spec, dataset):
    X, y, _, _ = dataset
    ref = _fit(spec.make(random_state=0), X, y)
    before = torch.random.get_rng_state()
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float32 if previous == torch.float64 else torch.float64)
        other = _fit(spec.make(random_state=0), X, y)
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(torch.random.get_rng_state(), before)
    np.testing.assert_array_equal(getattr(other, spec.param_attr), getattr(ref, spec.param_attr))


@pytest.mark.parametrize("module", [None, DropoutMLP])
def test_fits_in_threads_equal_the_same_fits_in_sequence(friedman, module):
    X, y = friedman
    params = dict(SMALL) if module is None else {**SMALL, "module": module, "module_kwargs": None}
    base = VarProNetRegressor(**params)
    seeds = [0, 1, 2, 3]
    sequential = [_fit(clone(base).set_params(random_state=s), X, y) for s in seeds]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        threaded = list(pool.map(lambda s: _fit(clone(base).set_params(random_state=s), X, y), seeds))
    for a, b in zip(sequential, threaded):
        np.testing.assert_array_equal(a.coef_, b.coef_)
        for p, q in zip(a.module_.parameters(), b.module_.parameters()):
            assert torch.equal(p, q)
    assert not np.array_equal(sequential[0].coef_, sequential[1].coef_)  # the seeds do matter


def test_dropout_fits_are_reproducible(friedman):
    X, y = friedman
    params = {**SMALL, "module": DropoutMLP, "module_kwargs": None}
    a = _fit(VarProNetRegressor(**params), X, y)
    torch.manual_seed(7)
    b = _fit(VarProNetRegressor(**params), X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)


# ---------------------------------------------------------------------------------------------- users' modules
class NaNModule(nn.Module):
    def __init__(self, n_features_in):
        super().__init__()
        self.lin = nn.Linear(n_features_in, 8)

    def forward(self, X):
        return self.lin(X) * float("nan")


class InfInTrainMode(NaNModule):
    def forward(self, X):
        out = torch.tanh(self.lin(X))
        return out / 0.0 if self.training else out


class OneDimensional(NaNModule):
    def forward(self, X):
        return self.lin(X).sum(1)


class WrongRows(NaNModule):
    def forward(self, X):
        return self.lin(X)[:1]


class WrongDtype(NaNModule):
    def forward(self, X):
        return self.lin(X).to(torch.float16)


class WrongDevice(NaNModule):
    def forward(self, X):
        return torch.zeros(X.shape[0], 8, dtype=X.dtype, device="meta")


class Detached(NaNModule):
    def forward(self, X):
        return torch.tanh(self.lin(X)).detach()


class NoFeatures(NaNModule):
    def forward(self, X):
        return self.lin(X)[:, :0]


class NotATensor(NaNModule):
    def forward(self, X):
        return (self.lin(X),)


BAD_MODULES = {
    NaNModule: (ValueError, "non-finite"),
    InfInTrainMode: (ValueError, "non-finite.*train mode"),
    OneDimensional: (ValueError, r"features \(n, M\)"),
    WrongRows: (ValueError, r"features \(n, M\)"),
    WrongDtype: (TypeError, "dtype"),
    WrongDevice: (TypeError, "meta"),
    Detached: (ValueError, "do not depend on its trainable parameters"),
    NoFeatures: (ValueError, "M >= 1"),
    NotATensor: (TypeError, "torch.Tensor"),
}


@pytest.mark.parametrize("cls", [VarProNetRegressor, VarProNetClassifier])
@pytest.mark.parametrize("module", list(BAD_MODULES), ids=lambda m: m.__name__)
def test_a_bad_module_is_a_clear_error_and_nothing_is_committed(friedman, cls, module):
    X, y = friedman
    if cls is VarProNetClassifier:
        y = (y > np.median(y)).astype(int)
    est = _fit(cls(**SMALL), X, y)
    before, pred = _state(est), est.predict(X)
    exc, match = BAD_MODULES[module]
    est.set_params(module=module, module_kwargs=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DivergenceWarning (nor any other) on the way to the error
        with pytest.raises(exc, match=match) as info:
            est.fit(X, y)
    assert module.__name__ in str(info.value)
    assert _state(est) == before
    np.testing.assert_array_equal(est.predict(X), pred)
    with pytest.raises(exc, match=match):  # a cold estimator too: nothing fitted
        cls(**{**SMALL, "module": module, "module_kwargs": None}).fit(X, y)


def test_module_validation_leaves_batchnorm_statistics_untouched(friedman):
    X, y = friedman

    class BN(nn.Module):
        def __init__(self, n_features_in):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(n_features_in, 8), nn.BatchNorm1d(8), nn.Tanh())

        def forward(self, X):
            return self.net(X)

    est = _fit(VarProNetRegressor(**{**SMALL, "module": BN, "module_kwargs": None, "batch_size": None,
                                     "max_iter": 1}), X, y)
    # one training step in train mode: BatchNorm tracked exactly one batch (the validation pass is undone)
    assert int(est.module_.net[1].num_batches_tracked) == 1


# ---------------------------------------------------------------------------------------------- targets at any scale
@pytest.mark.parametrize("factor", [1e-14, 1e12])
def test_targets_at_any_scale_give_the_same_model(regressor_spec, regression_data, factor):
    X, y, Xt, yt = regression_data
    ref = _fit(regressor_spec.make(random_state=0), X, y)
    tiny = _fit(regressor_spec.make(random_state=0), X, factor * y)
    np.testing.assert_allclose(tiny.y_scale_, factor * ref.y_scale_, rtol=1e-12)
    np.testing.assert_allclose(tiny.score(Xt, factor * yt), ref.score(Xt, yt), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("y_of", [lambda y: 1e-14 * y, lambda y: 3.0 + 1e-14 * y, lambda y: np.full_like(y, 7.0),
                                  lambda y: np.c_[1e-14 * y, np.zeros_like(y), 1e-100 * y]])
def test_target_scale_is_standard_scalers(regression_data, y_of):
    X, y, _, _ = regression_data
    Y = y_of(y)
    from skflow import VarProSHLRegressor

    est = _fit(VarProSHLRegressor(width=8, max_iter=2, device="cpu", random_state=0), X, Y)
    scaler = StandardScaler().fit(Y.reshape(len(Y), -1))
    np.testing.assert_allclose(est.y_scale_, scaler.scale_, rtol=1e-12)
    np.testing.assert_allclose(est.y_mean_, scaler.mean_, rtol=1e-12)


# ---------------------------------------------------------------------------------------------- compile fallback
@pytest.fixture
def fresh_kernels(monkeypatch):
    """Kernel registries with nothing built or failed (as in test_fused.py), restored afterwards."""
    from skflow.flows import _fused

    for table in (_fused._DERIVATIVE, _fused._VALUE):
        for name, kernel in list(table.items()):
            monkeypatch.setitem(table, name, _fused.FusedKernel(kernel.fn, kernel.name))
    for name in ("_PRODUCT_SUM", "_OUTER_SUM"):
        monkeypatch.setattr(_fused, name, _fused.FusedKernel(getattr(_fused, name).fn, name))
    monkeypatch.setattr(_fused, "_GRAPHS", {})


def _no_compiler(*args, **kwargs):
    def broken(*a, **k):
        raise RuntimeError("no C++ compiler found (simulated)")
    return broken


@pytest.mark.parametrize("name", ["MeanFieldNODERegressor", "RKHSNODEClassifier", "VarProSHLRegressor"])
def test_one_compile_fallback_warning_per_fit(monkeypatch, fresh_kernels, name):
    import skflow
    from skflow.exceptions import CompileFallbackWarning

    monkeypatch.setattr(torch, "compile", _no_compiler)
    X = np.random.default_rng(0).normal(size=(60, 3))
    y = np.sin(X[:, 0])
    kw = {"MeanFieldNODERegressor": dict(width=16, n_layers=3),
          "RKHSNODEClassifier": dict(n_features=16, n_layers=3),
          "VarProSHLRegressor": dict(width=16, solver="gd", learning_rate=1e-3)}[name]
    kw.update(max_iter=5, early_stopping=False, random_state=0, device="cpu")
    if name == "RKHSNODEClassifier":
        y = (y > 0).astype(int)
    Est = getattr(skflow, name)
    for _ in range(2):  # every fit: the first ran into the failure, the second knows the kernels failed
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Est(compile=True, **kw).fit(X, y)
        fallbacks = [w for w in caught if issubclass(w.category, CompileFallbackWarning)]
        assert len(fallbacks) <= 1
        if _ == 0:
            assert len(fallbacks) == 1 and "compile=False" in str(fallbacks[0].message)


# ---------------------------------------------------------------------------------------------- predict chunks
@pytest.mark.parametrize("params", [dict(feature_map="rbf"), dict(feature_map="rbf", feature_domain="torus"),
                                    dict(feature_map="perceptron")], ids=["rbf", "torus", "perceptron"])
def test_varpro_predict_chunk_is_sized_by_the_width_within_the_budget(regression_data, params, monkeypatch):
    import skflow._base
    from skflow import VarProSHLRegressor

    X, y, Xt, _ = regression_data
    make = lambda w: _fit(VarProSHLRegressor(width=w, max_iter=2, device="cpu", random_state=0, **params), X, y)  # noqa: E731
    narrow, wide = make(16), make(256)
    assert wide._predict_chunk() < narrow._predict_chunk() / 4 or narrow._predict_chunk() > X.shape[0] * 100
    for est in (narrow, wide):
        M, d = est.flow_.omega.shape
        # the (rows, M) matrices a forward pass of RBF features holds at once (measured), and the torus's d more
        live = (4 + (d + 2 if params.get("feature_domain") == "torus" else 0)) * M if params["feature_map"] == "rbf" \
            else 0
        assert est._predict_chunk() * max(live * est.flow_.itemsize, est.flow_.bytes_per_row(training=False)) \
            <= skflow._base.PREDICT_MEMORY_BUDGET
    pred = wide.predict(Xt)
    monkeypatch.setattr(skflow._base, "PREDICT_MEMORY_BUDGET", 64 * 2**10)  # many chunks: the same predictions
    assert wide._predict_chunk() < Xt.shape[0]
    np.testing.assert_allclose(wide.predict(Xt), pred, rtol=1e-12, atol=1e-12)

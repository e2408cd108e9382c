"""Promises that hold in threads and with users' modules (issue 22): no fit reads or writes torch's global state,
a user's module is validated before anything is trained, targets at any scale are standardised, displays say
what they support and work at the edges, one compile-fallback warning per fit, prediction chunks within budget.
"""

import concurrent.futures
import pickle
import re
import sys
import warnings

import numpy as np
import pytest
import torch
import torch._inductor
from sklearn.base import clone
from sklearn.datasets import make_friedman1
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
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
    np.testing.assert_array_equal(other.outer_weights_, ref.outer_weights_)
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
        np.testing.assert_array_equal(a.outer_weights_, b.outer_weights_)
        for p, q in zip(a.module_.parameters(), b.module_.parameters()):
            assert torch.equal(p, q)
    assert not np.array_equal(sequential[0].outer_weights_, sequential[1].outer_weights_)  # the seeds do matter


def test_dropout_fits_are_reproducible(friedman):
    X, y = friedman
    params = {**SMALL, "module": DropoutMLP, "module_kwargs": None}
    a = _fit(VarProNetRegressor(**params), X, y)
    torch.manual_seed(7)
    b = _fit(VarProNetRegressor(**params), X, y)
    np.testing.assert_array_equal(a.outer_weights_, b.outer_weights_)


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
def _no_compiler(*args, **kwargs):
    def broken(*a, **k):
        raise RuntimeError("no C++ compiler found (simulated)")
    return broken


@pytest.mark.parametrize("name", ["MeanFieldNODERegressor", "RKHSNODEClassifier", "VarProSHLRegressor"])
def test_one_compile_fallback_warning_per_fit(monkeypatch, fresh_kernels, name):
    import skflow
    from skflow.exceptions import CompileFallbackWarning

    monkeypatch.setattr(torch, "compile", _no_compiler)
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", _no_compiler())
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


# ---------------------------------------------------------------------------------------------- displays
@pytest.fixture
def plt():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as pyplot

    yield pyplot
    pyplot.close("all")


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.mark.parametrize("make_est", [
    lambda X, y: Ridge().fit(X, y),
    lambda X, y: make_pipeline(StandardScaler(), Ridge()).fit(X, y),
    lambda X, y: KNeighborsRegressor().fit(X, y),
], ids=["Ridge", "Pipeline-Ridge", "KNeighborsRegressor"])
def test_displays_reject_unsupported_estimators_clearly(friedman, plt, make_est):
    from skflow.inspection import ConvergenceDisplay, FeatureDistributionDisplay, KernelSpectrumDisplay

    X, y = friedman
    est = make_est(X, y)
    final = type(est[-1] if hasattr(est, "steps") else est).__name__
    for call in (lambda: ConvergenceDisplay.from_estimator(est), lambda: KernelSpectrumDisplay.from_estimator(est, X),
                 lambda: FeatureDistributionDisplay.from_estimator(est)):
        with pytest.raises(TypeError, match=f"supports the skflow estimators .*got .*{final}"):
            call()


def test_displays_name_what_they_support(friedman, plt):
    from skflow.inspection import FeatureDistributionDisplay, KernelSpectrumDisplay

    X, y = friedman
    net = _fit(VarProNetRegressor(**SMALL), X, y)
    with pytest.raises(TypeError, match="MeanFieldNODERegressor, RKHSNODEClassifier.*VarProNetRegressor"):
        KernelSpectrumDisplay.from_estimator(net, X)
    with pytest.raises(TypeError, match="VarProSHLRegressor.*VarProNetRegressor"):
        FeatureDistributionDisplay.from_estimator(net)


def _interrupted_at_first_step(est, X, y, monkeypatch):
    """``est`` fitted with a Ctrl-C in its first step (as in test_robustness.py): ``n_iter_ = 0``."""

    def step(self, *args):
        raise KeyboardInterrupt

    from skflow.flows.node import MeanFieldSHLFlow
    from skflow.flows.rkhs import RKHSFlow
    from skflow.flows.varpro import VarProFlow

    for cls in (MeanFieldSHLFlow, RKHSFlow, VarProFlow):
        monkeypatch.setattr(cls, "step", step)
    est = _fit(est, X, y)
    monkeypatch.undo()
    assert est.n_iter_ == 0 and est.stop_reason_ == "interrupted"
    return est


def test_displays_work_at_n_iter_0(friedman, plt, monkeypatch):
    from skflow import MeanFieldNODERegressor, VarProSHLRegressor
    from skflow.inspection import ConvergenceDisplay, FeatureDistributionDisplay, KernelSpectrumDisplay

    X, y = friedman
    node = _interrupted_at_first_step(MeanFieldNODERegressor(n_layers=2, width=8, max_iter=5, device="cpu",
                                                             random_state=0), X, y, monkeypatch)
    disp = ConvergenceDisplay.from_estimator(node)
    assert disp.bound_line_ is None and "no iterations" in disp.bound_caveat_
    assert disp.line_.get_xdata().size == 0
    KernelSpectrumDisplay.from_estimator(node, X, max_samples=20)
    varpro = _interrupted_at_first_step(VarProSHLRegressor(width=16, max_iter=5, store_features_every=1,
                                                           device="cpu", random_state=0), X, y, monkeypatch)
    ConvergenceDisplay.from_estimator(varpro)
    disp = FeatureDistributionDisplay.from_estimator(varpro)
    assert disp.line_ is not None


def test_feature_distribution_of_1d_torus_features(plt):
    from skflow import VarProSHLRegressor
    from skflow.inspection import FeatureDistributionDisplay

    rng = np.random.RandomState(0)
    X = rng.uniform(0, 4, size=(80, 1))
    y = np.cos(2 * np.pi * X[:, 0] / 4)
    est = _fit(VarProSHLRegressor(width=32, feature_map="rbf", feature_domain="torus", max_iter=5,
                                  store_features_every=1, device="cpu", random_state=0), X, y)
    assert est.features_.shape == (32, 1)
    disp = FeatureDistributionDisplay.from_estimator(est)
    centres, dens = disp.line_.get_xdata(), disp.line_.get_ydata()
    assert centres.min() > -2 and centres.max() < 2  # [-L/2, L/2) with L = torus_period = 4
    assert np.sum(dens) * (centres[1] - centres[0]) == pytest.approx(1.0)
    assert disp.initial_line_ is not None and disp.ax_.get_xlim() == (-2.0, 2.0)
    # the constructor on one-dimensional features given as a 1-D array
    FeatureDistributionDisplay(np.linspace(-1, 1, 10), False).plot()


def test_pl_bound_only_where_the_theory_gives_it(plt):
    from sklearn.datasets import make_classification

    from skflow import RKHSNODEClassifier
    from skflow.inspection import ConvergenceDisplay

    X, y = make_classification(300, 4, n_informative=3, n_redundant=0, random_state=0)
    X = StandardScaler().fit_transform(X)
    make = lambda **kw: _fit(RKHSNODEClassifier(**{**dict(n_features=32, n_layers=2, max_iter=5, device="cpu",  # noqa: E731
                                                          random_state=0), **kw}), X, y)
    for est, why in ((make(batch_size=64, momentum=0.9), "minibatch steps.*momentum=0.9"),
                     (make(batch_size=None, momentum=0.9), "momentum=0.9"),
                     (make(batch_size=64, momentum=0.0), "minibatch")):
        disp = ConvergenceDisplay.from_estimator(est)
        assert disp.bound_line_ is None
        assert "no P-L bound" in disp.bound_caveat_ and re.search(why, disp.bound_caveat_)
        assert any("no P-L bound" in lab for lab in _legend(disp.ax_))
        assert not any(lab.startswith("P-L bound") or lab == "P-L constant m" for lab in _legend(disp.ax_))
    disp = ConvergenceDisplay.from_estimator(make(batch_size=None, momentum=0.0))
    assert disp.bound_caveat_ is None and disp.bound_line_ is not None
    assert any(lab.startswith("P-L bound") for lab in _legend(disp.ax_))


def test_no_bound_without_a_finite_pl_constant(plt):
    from skflow.inspection import ConvergenceDisplay

    t = np.linspace(0, 1, 5)
    disp = ConvergenceDisplay(t, np.exp(-t), np.full(5, np.nan), float("nan")).plot()
    assert disp.bound_line_ is None and "not finite" in disp.bound_caveat_


def test_kernel_spectrum_marks_eigenvalues_below_round_off(plt):
    from sklearn.datasets import make_classification

    from skflow import RKHSNODEClassifier
    from skflow.inspection import KernelSpectrumDisplay

    disp = KernelSpectrumDisplay([np.array([1.0, 0.5, 1e-18, -1e-17])]).plot()
    assert disp.below_roundoff_.tolist() == [2] and disp.lambda_min_below_roundoff_.tolist() == [True]
    assert np.isnan(disp.lines_[0].get_ydata()[2:]).all() and np.isfinite(disp.lines_[0].get_ydata()[:2]).all()
    assert disp.roundoff_span_ is not None and disp.roundoff_markers_.get_offsets().shape == (2, 2)
    assert disp.roundoff_[0] == pytest.approx(4 * np.finfo(float).eps)
    assert any("below round-off" in lab for lab in _legend(disp.ax_))
    clean = KernelSpectrumDisplay([np.array([1.0, 0.5, 0.1])]).plot()
    assert clean.roundoff_span_ is None and clean.roundoff_markers_ is None and clean.below_roundoff_.tolist() == [0]
    # random features of M = 16 on 60 points: the last 44 eigenvalues of Phi Phi^T are zero up to round-off
    X, y = make_classification(60, 4, n_informative=3, n_redundant=0, random_state=0)
    est = _fit(RKHSNODEClassifier(n_features=16, max_iter=2, device="cpu", random_state=0),
               StandardScaler().fit_transform(X), y)
    disp = KernelSpectrumDisplay.from_estimator(est, StandardScaler().fit_transform(X))
    assert disp.below_roundoff_[0] >= 60 - 16 and disp.lambda_min_below_roundoff_[0]
    assert disp.below_roundoff_[-1] < disp.below_roundoff_[0]  # the closed form is far better conditioned


def test_a_module_that_raises_says_where(friedman):
    X, y = friedman

    class WrongWidth(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)  # the data have 10 features

        def forward(self, X):
            return self.lin(X)

    with pytest.raises(RuntimeError) as info:
        VarProNetRegressor(WrongWidth, device="cpu").fit(X, y)
    if sys.version_info >= (3, 11):  # exception notes
        assert any("WrongWidth" in note and "first batch" in note for note in info.value.__notes__)


def test_fits_of_every_estimator_in_threads_equal_the_same_fits_in_sequence(spec, dataset):
    X, y, _, _ = dataset
    seeds = [0, 1, 2]
    sequential = [_fit(spec.make(random_state=s), X, y) for s in seeds]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        threaded = list(pool.map(lambda s: _fit(spec.make(random_state=s), X, y), seeds))
    for a, b in zip(sequential, threaded):
        np.testing.assert_array_equal(getattr(a, spec.param_attr), getattr(b, spec.param_attr))
        np.testing.assert_array_equal(a.history_["risk"], b.history_["risk"])


def test_a_dropout_model_pickles_and_warm_starts_reproducibly(friedman):
    X, y = friedman
    params = {**SMALL, "module": DropoutMLP, "module_kwargs": None, "warm_start": True}
    a = _fit(VarProNetRegressor(**params), X, y)
    b = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(b.predict(X), a.predict(X))
    _fit(a, X, y), _fit(b, X, y)  # the continued steps draw the same dropout masks
    np.testing.assert_array_equal(b.outer_weights_, a.outer_weights_)

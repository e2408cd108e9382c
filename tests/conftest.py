"""Fixtures shared by the test files: small fast estimator factories and small data sets.

The five estimators are described by :class:`EstimatorSpec` objects. The fixtures ``spec`` (every estimator),
``regressor_spec`` and ``classifier_spec`` parametrize a test over them with the ids ``"node"``, ``"rkhs"``,
``"varpro"``, ``"varpronet-regressor"`` and ``"varpronet-classifier"``; ``dataset`` gives the data set that fits
the estimator of ``spec`` (a regression set for the regressors, a classification set for the classifiers).
"""

import os
import tempfile
import warnings
from dataclasses import dataclass, field

import pytest
from sklearn.base import ClassifierMixin
from sklearn.datasets import make_blobs, make_friedman1
from sklearn.preprocessing import StandardScaler

from skflow import (
    MeanFieldNODERegressor,
    RKHSNODEClassifier,
    VarProNetClassifier,
    VarProNetRegressor,
    VarProSHLRegressor,
)
from skflow.flows.node import MeanFieldSHLFlow
from skflow.flows.rkhs import RKHSFlow
from skflow.flows.varpro import VarProFlow
from skflow.flows.varpronet import VarProNetFlow
from skflow.precompile import set_background_builds

# the suite's many fits must not build kernels behind each other's backs: a later fit of the same shape would run
# compiled, its results equal to the eager ones only to rounding (tests/test_precompile.py turns them back on);
# and no fit may find the packages of the user's own cache: the suite's cache starts empty, in a folder of its own
# (the tests of compilation each use a fresh one, see ``fresh_kernels``)
set_background_builds(False)
os.environ["SKFLOW_CACHE_DIR"] = tempfile.mkdtemp(prefix="skflow-test-cache-")


@dataclass(frozen=True)
class EstimatorSpec:
    """One estimator, with a configuration small enough for a fit to take a fraction of a second.

    Attributes
    ----------
    id : the pytest id ("node", "rkhs", "varpro", "varpronet-regressor", "varpronet-classifier").
    cls : the estimator class.
    params : its small configuration (always on the CPU); ``make(**kw)`` overrides it.
    flow_cls : the engine class, whose ``step`` a test may patch.
    param_attr : a public fitted array of trained parameters.
    grid : a hyper-parameter grid for GridSearchCV, by parameter name.
    min_score : a floor for the held-out ``score`` of the small configuration on ``dataset`` (with ``tol=0``).
    bad_params : parameter values that ``fit`` must reject with a ValueError.
    fixed_attrs : public fitted arrays that training never changes (e.g. random features).
    pickled_attrs : fitted attributes specific to this estimator that a pickle round trip must keep.
    float32_matches_float64 : whether a seed gives the same model in float32 as in float64 (to float32
        rounding); False where the initialisation itself is drawn in the fit's dtype (VarProNet's module is
        built with torch's default dtype set to ``dtype``), so that the two dtypes start from different draws.
    """

    id: str
    cls: type
    params: dict
    flow_cls: type
    param_attr: str
    grid: dict
    min_score: float
    bad_params: tuple = field(default=())
    fixed_attrs: tuple = field(default=())
    pickled_attrs: tuple = field(default=())
    float32_matches_float64: bool = True

    @property
    def is_classifier(self):
        return issubclass(self.cls, ClassifierMixin)

    @property
    def name(self):
        return self.cls.__name__

    def make(self, **kw):
        return self.cls(**{**self.params, **kw})

    def output(self, model, X):
        """The continuous output of a fitted model: decision_function for the classifier, else predict."""
        return model.decision_function(X) if self.is_classifier else model.predict(X)

    def __repr__(self):
        return self.id


NODE = EstimatorSpec(
    id="node",
    cls=MeanFieldNODERegressor,
    params=dict(n_layers=3, width=32, max_iter=60, device="cpu"),
    flow_cls=MeanFieldSHLFlow,
    param_attr="U_",
    grid={"output_scale": [1.0, 4.0], "feature_scale": [0.25, 0.5]},
    min_score=0.7,
    pickled_attrs=("convergence_report_", "cot_distance_"),
    bad_params=(dict(width=0), dict(solver="heun"), dict(activation="sigmoid"), dict(learning_rate=-1.0),
                dict(feature_init="uniform"), dict(dtype="float16")),
)
RKHS = EstimatorSpec(
    id="rkhs",
    cls=RKHSNODEClassifier,
    params=dict(n_layers=3, n_features=64, max_iter=20, device="cpu"),
    flow_cls=RKHSFlow,
    param_attr="theta_",
    grid={"output_scale": [0.3, 1.0], "n_layers": [2, 3]},
    min_score=0.9,
    bad_params=(dict(n_features=0), dict(n_layers=0), dict(kernel="laplace"), dict(loss="hinge"),
                dict(learning_rate=-1.0), dict(momentum=1.5), dict(dtype="float16")),
    fixed_attrs=("random_weights_", "random_offset_"),
    pickled_attrs=("classes_", "random_weights_"),
)
VARPRO = EstimatorSpec(
    id="varpro",
    cls=VarProSHLRegressor,
    # early stopping off: the shared contract compares full training runs (early stopping is tested on its own)
    params=dict(width=16, max_iter=10, store_features_every=5, early_stopping=False, device="cpu"),
    flow_cls=VarProFlow,
    param_attr="features_",
    grid={"alpha": [1e-3, 1e-2], "width": [8, 16]},
    min_score=0.7,
    pickled_attrs=("feature_history_", "outer_weights_"),
    bad_params=({"alpha": 0.0}, {"solver": "newton"}, {"feature_domain": "torus"}, {"regularization": "l1"},
                {"projection_momentum": 1.0}, {"width": 0}),
)

# a one-hidden-layer MLP backbone of 16 features; the bad parameters are those of the VarPro head and the module
_VARPRONET_PARAMS = dict(module_kwargs={"hidden_layer_sizes": (16,)}, max_iter=30, device="cpu")
_VARPRONET_BAD = ({"alpha": 0.0}, {"projection_momentum": 1.0}, {"backbone_momentum": 1.0},
                  {"regularization": "l1"}, {"module": 3}, {"dtype": "float16"})
VARPRONET_REGRESSOR = EstimatorSpec(
    id="varpronet-regressor",
    cls=VarProNetRegressor,
    params=_VARPRONET_PARAMS,
    flow_cls=VarProNetFlow,
    param_attr="outer_weights_",
    grid={"alpha": [1e-3, 1e-2], "module_kwargs": [{"hidden_layer_sizes": (8,)}, {"hidden_layer_sizes": (16,)}]},
    min_score=0.5,
    bad_params=_VARPRONET_BAD,
    pickled_attrs=("module_", "y_mean_", "kernel_spectrum_"),
    float32_matches_float64=False,
)
VARPRONET_CLASSIFIER = EstimatorSpec(
    id="varpronet-classifier",
    cls=VarProNetClassifier,
    params=_VARPRONET_PARAMS,
    flow_cls=VarProNetFlow,
    param_attr="outer_weights_",
    grid={"alpha": [1e-3, 1e-2], "module_kwargs": [{"hidden_layer_sizes": (8,)}, {"hidden_layer_sizes": (16,)}]},
    min_score=0.8,
    bad_params=_VARPRONET_BAD,
    pickled_attrs=("classes_", "module_", "temperature_"),
    float32_matches_float64=False,
)

SPECS = (NODE, RKHS, VARPRO, VARPRONET_REGRESSOR, VARPRONET_CLASSIFIER)
REGRESSORS = tuple(s for s in SPECS if not s.is_classifier)
CLASSIFIERS = tuple(s for s in SPECS if s.is_classifier)


@pytest.fixture(params=SPECS, ids=[s.id for s in SPECS])
def spec(request):
    """Each of the five estimators."""
    return request.param


@pytest.fixture(params=REGRESSORS, ids=[s.id for s in REGRESSORS])
def regressor_spec(request):
    """Each regressor."""
    return request.param


@pytest.fixture(params=CLASSIFIERS, ids=[s.id for s in CLASSIFIERS])
def classifier_spec(request):
    """Each classifier."""
    return request.param


@pytest.fixture(scope="session")
def regression_data():
    """Friedman #1, standardised: 160 training and 80 held-out points, 10 features."""
    X, y = make_friedman1(n_samples=240, noise=0.3, random_state=0)
    X = StandardScaler().fit_transform(X)
    return X[:160], y[:160], X[160:], y[160:]


@pytest.fixture(scope="session")
def classification_data():
    """Three overlapping Gaussian blobs, standardised: 150 training and 50 held-out points, 4 features."""
    X, y = make_blobs(n_samples=200, centers=3, n_features=4, cluster_std=2.0, random_state=0)
    X = StandardScaler().fit_transform(X)
    return X[:150], y[:150], X[150:], y[150:]


@pytest.fixture
def dataset(spec, request):
    """(X, y, X_test, y_test) for the estimator of ``spec``."""
    return request.getfixturevalue("classification_data" if spec.is_classifier else "regression_data")


@pytest.fixture(scope="session")
def quiet_fit():
    """``quiet_fit(model, X, y)``: fit with every warning silenced, return the model."""

    def fit(model, X, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.fit(X, y)

    return fit


@pytest.fixture
def fresh_kernels(monkeypatch, tmp_path):
    """The compiled-kernel registries of :mod:`skflow.flows._fused` with nothing built or failed, and an empty
    package cache (:mod:`skflow.flows._aot`), restored afterwards (for tests of compilation and of its fallback)."""
    from skflow.flows import _fused

    monkeypatch.setenv("SKFLOW_CACHE_DIR", str(tmp_path / "skflow-cache"))

    for table in (_fused._DERIVATIVE, _fused._VALUE):
        for name, kernel in list(table.items()):
            monkeypatch.setitem(table, name, _fused.FusedKernel(kernel.fn, kernel.name))
    for name in ("_PRODUCT_SUM", "_OUTER_SUM"):
        monkeypatch.setattr(_fused, name, _fused.FusedKernel(getattr(_fused, name).fn, name))
    monkeypatch.setattr(_fused, "_GRAPHS", {})

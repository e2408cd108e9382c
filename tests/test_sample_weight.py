"""Sample weights (``../shared/SPEC.md`` §5): the gradient flow of the weighted empirical measure.

The properties the theory gives: integer weights are rows repeated that many times (full batch, fixed
hyperparameters, to round-off), a weight of 0 drops its row, a common factor of the weights changes nothing; and
what scikit-learn builds on them: ``class_weight``, metadata routing in searches and pipelines.
"""

import warnings

import numpy as np
import pytest
import sklearn
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.metrics import recall_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skflow import (
    MeanFieldNODERegressor,
    RKHSNODEClassifier,
    VarProNetClassifier,
    VarProNetRegressor,
    VarProSHLRegressor,
)
from skflow._training import normalise_weights, run_epoch

#: full batch and hyperparameters fixed (no split, no leave-one-out, no median over the rows): the configurations
#: in which a weighted row and repeated rows are the same data
FIXED = {
    "node": (MeanFieldNODERegressor, dict(n_layers=3, width=32, max_iter=25, feature_scale=1.0, learning_rate=0.1,
                                          early_stopping=False)),
    "node-midpoint-tanh": (MeanFieldNODERegressor, dict(n_layers=2, width=16, max_iter=10, feature_scale=1.0,
                                                        learning_rate=0.1, early_stopping=False, solver="midpoint",
                                                        activation="tanh")),
    "rkhs": (RKHSNODEClassifier, dict(n_layers=3, n_features=64, max_iter=15, learning_rate=50.0, length_scale=1.0,
                                      batch_size=None)),
    "rkhs-cross-entropy": (RKHSNODEClassifier, dict(n_layers=2, n_features=64, max_iter=10, learning_rate=5.0,
                                                    length_scale=1.0, batch_size=None, loss="cross_entropy",
                                                    momentum=0.0)),
    "varpro": (VarProSHLRegressor, dict(width=32, max_iter=15, alpha=1e-3, early_stopping=False)),
    "varpro-two-timescale": (VarProSHLRegressor, dict(width=32, max_iter=10, alpha=1e-2, early_stopping=False,
                                                      solver="two-timescale")),
    "varpro-rbf": (VarProSHLRegressor, dict(width=32, max_iter=10, alpha=1e-3, early_stopping=False,
                                            feature_map="rbf")),
    "varpronet-regressor": (VarProNetRegressor, dict(max_iter=8, batch_size=None, early_stopping=False,
                                                     module_kwargs={"hidden_layer_sizes": (16,)})),
    "varpronet-classifier": (VarProNetClassifier, dict(max_iter=8, batch_size=None, early_stopping=False,
                                                       module_kwargs={"hidden_layer_sizes": (16,)})),
}


def _data(cls, n=90, seed=0):
    if cls in (RKHSNODEClassifier, VarProNetClassifier):
        X, y = make_classification(n, 5, n_informative=3, n_redundant=0, n_classes=3, random_state=seed)
    else:
        X, y = make_regression(n, 5, noise=5.0, random_state=seed)
    return StandardScaler().fit_transform(X), y


def _output(model, X):
    return model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)


def _fit(cls, params, X, y, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(**params, random_state=0, device="cpu", tol=0.0).fit(X, y, **fit_params)


def _relative(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("name", list(FIXED))
def test_integer_weights_are_repeated_rows(name):
    cls, params = FIXED[name]
    X, y = _data(cls)
    w = np.random.RandomState(1).randint(0, 4, X.shape[0]).astype(float)  # some rows 0, some 2 or 3 times
    rows = np.repeat(np.arange(X.shape[0]), w.astype(int))
    weighted = _fit(cls, params, X, y, sample_weight=w)
    repeated = _fit(cls, params, X[rows], y[rows])
    assert weighted.n_iter_ == repeated.n_iter_
    assert _relative(_output(weighted, X), _output(repeated, X)) < 1e-5
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-6)


@pytest.mark.parametrize("name", ["node", "rkhs", "varpro", "varpronet-regressor"])
def test_zero_weight_drops_the_row_and_a_common_factor_changes_nothing(name):
    cls, params = FIXED[name]
    X, y = _data(cls)
    w = np.ones(X.shape[0])
    w[::7] = 0.0
    dropped = _fit(cls, params, X[w > 0], y[w > 0])
    zero = _fit(cls, params, X, y, sample_weight=w)
    scaled = _fit(cls, params, X, y, sample_weight=3.5 * w)
    assert _relative(_output(zero, X), _output(dropped, X)) < 1e-5
    assert _relative(_output(scaled, X), _output(zero, X)) < 1e-10


def test_unit_weights_change_nothing():
    cls, params = FIXED["node"]
    X, y = _data(cls)
    plain = _fit(cls, params, X, y)
    ones = _fit(cls, params, X, y, sample_weight=np.ones(X.shape[0]))
    np.testing.assert_allclose(ones.predict(X), plain.predict(X), rtol=1e-12, atol=1e-12)


def test_weighted_target_moments():
    X, y = _data(MeanFieldNODERegressor)
    w = np.random.RandomState(0).uniform(0, 2, X.shape[0])
    m = _fit(MeanFieldNODERegressor, dict(FIXED["node"][1], max_iter=2), X, y, sample_weight=w)
    scaler = StandardScaler().fit(y[:, None], sample_weight=w)
    np.testing.assert_allclose(m.y_mean_, scaler.mean_, rtol=1e-12)
    np.testing.assert_allclose(m.y_scale_, scaler.scale_, rtol=1e-12)


def test_minibatch_weights_are_normalised_per_batch():
    """A weighted minibatch step descends the batch's weighted risk normalised by the batch's weight; a batch of
    weight 0 takes no step; the epoch record is the weight-share average."""

    class Recorder:
        weighted = True
        data_parallel = None

        def __init__(self):
            self.batches = []

        def step(self, X, Y, lr):
            self.batches.append(Y[:, -1].clone())
            return {"risk": Y[:, -1].sum() * 0 + float(len(self.batches))}

    X = torch.zeros(12, 1, dtype=torch.float64)
    w = torch.tensor([0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8], dtype=torch.float64)
    Y = torch.stack([torch.zeros(12, dtype=torch.float64), w], dim=1)
    flow = Recorder()
    run_epoch(flow, X, Y, 0.1, 4, torch.Generator().manual_seed(0))
    for b in flow.batches:
        assert float(b.sum()) == pytest.approx(b.shape[0])  # mean 1 over each batch
    assert len(flow.batches) >= 2
    assert normalise_weights(Y[:4]).abs().sum() == 0  # a batch of weight 0 keeps weights 0


@pytest.mark.parametrize("bad, message", [
    (-np.ones(40), "(?i)negative"),
    (np.zeros(40), "non-zero|zero for every sample"),
    (np.full(40, np.nan), "NaN"),
    (np.ones(39), "sample_weight"),
])
def test_bad_weights_are_refused_and_change_nothing(bad, message):
    X, y = _data(MeanFieldNODERegressor, n=40)
    model = _fit(MeanFieldNODERegressor, dict(FIXED["node"][1], max_iter=2), X, y)
    before = model.predict(X)
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, sample_weight=bad)
    np.testing.assert_array_equal(model.predict(X), before)


@pytest.mark.parametrize("cls, params", [
    (RKHSNODEClassifier, dict(n_layers=3, n_features=128, max_iter=30, batch_size=None, length_scale=1.0)),
    (VarProNetClassifier, dict(max_iter=40, batch_size=None, early_stopping=False,
                               module_kwargs={"hidden_layer_sizes": (16,)})),
])
def test_balanced_class_weight_raises_minority_recall(cls, params):
    X, y = make_classification(400, 4, n_informative=2, n_redundant=0, weights=[0.92, 0.08], class_sep=0.6,
                               flip_y=0.02, random_state=3)
    X = StandardScaler().fit_transform(X)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)
    plain = _fit(cls, params, Xtr, ytr)
    balanced = _fit(cls, dict(params, class_weight="balanced"), Xtr, ytr)
    r_plain = recall_score(yte, plain.predict(Xte), pos_label=1)
    r_bal = recall_score(yte, balanced.predict(Xte), pos_label=1)
    assert r_bal > r_plain + 0.1, (r_plain, r_bal)
    # a dict is the same as the equivalent sample_weight
    weights = {0: 1.0, 1: 5.0}
    by_dict = _fit(cls, dict(params, class_weight=weights), Xtr, ytr)
    by_rows = _fit(cls, params, Xtr, ytr, sample_weight=np.where(ytr == 1, 5.0, 1.0))
    np.testing.assert_allclose(by_dict.predict_proba(Xte), by_rows.predict_proba(Xte), rtol=1e-10, atol=1e-12)


def test_class_weight_with_an_unknown_label_is_refused():
    X, y = _data(RKHSNODEClassifier)
    with pytest.raises(ValueError, match="class_weight names labels not in y"):
        RKHSNODEClassifier(class_weight={7: 2.0}, max_iter=2, device="cpu").fit(X, y)


def test_metadata_routing_in_a_search_and_a_pipeline():
    cls, params = FIXED["node"]
    X, y = _data(cls, n=60)
    w = np.random.RandomState(0).randint(0, 3, X.shape[0]).astype(float)
    seen = []

    class Spy(MeanFieldNODERegressor):
        def fit(self, X, y, sample_weight=None, monitor=None):
            seen.append(None if sample_weight is None else np.asarray(sample_weight).copy())
            return super().fit(X, y, sample_weight=sample_weight, monitor=monitor)

    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = Spy(**dict(params, max_iter=3), random_state=0, device="cpu")
        est.set_fit_request(sample_weight=True, monitor=False).set_score_request(sample_weight=True)
        search = GridSearchCV(est, {"learning_rate": [0.05, 0.1]}, cv=2).fit(X, y, sample_weight=w)
        assert len(seen) == 2 * 2 + 1 and all(s is not None for s in seen)
        assert sum(s.shape[0] for s in seen[:2]) == X.shape[0]  # the folds' weights
        np.testing.assert_array_equal(seen[-1], w)  # the refit gets all the weights
        assert np.isfinite(search.best_score_)
        seen.clear()
        pipe = make_pipeline(StandardScaler().set_fit_request(sample_weight=False), est).fit(X, y, sample_weight=w)
        np.testing.assert_array_equal(seen[-1], w)
        pipe.score(X, y, sample_weight=w)
    # without a request, routing refuses to drop the weights silently
    with sklearn.config_context(enable_metadata_routing=True):
        plain = GridSearchCV(MeanFieldNODERegressor(**dict(params, max_iter=2), device="cpu"),
                             {"learning_rate": [0.1]}, cv=2)
        with pytest.raises(Exception, match="sample_weight"):
            plain.fit(X, y, sample_weight=w)


def test_weighted_kernel_spectrum_is_that_of_the_repeated_rows():
    """The tangent kernel of the weighted measure, ``Phi^T diag(w) Phi / (sum(w) M)``, is that of the repeated rows;
    ``lambda_min`` of the weighted Gram matrix is that of ``D^(1/2) K D^(1/2)``."""
    from skflow.diagnostics import kernels

    rng = np.random.RandomState(0)
    Phi = torch.as_tensor(rng.randn(30, 8))
    w = rng.randint(1, 4, 30).astype(float)
    rows = np.repeat(np.arange(30), w.astype(int))
    np.testing.assert_allclose(kernels.top_eigenvalues(Phi, 5, torch.as_tensor(w)),
                               kernels.top_eigenvalues(Phi[rows], 5), rtol=1e-10)
    K = (Phi @ Phi.T).numpy() + np.eye(30)
    D = np.sqrt(w / w.mean())
    assert kernels.lambda_min(K, w) == pytest.approx(np.linalg.eigvalsh(D[:, None] * K * D[None, :])[0], rel=1e-10)
    cls, params = FIXED["varpro"]
    X, y = _data(cls)
    weighted = _fit(cls, params, X, y, sample_weight=w.repeat(3))
    idx = np.repeat(np.arange(X.shape[0]), w.repeat(3).astype(int))
    repeated = _fit(cls, params, X[idx], y[idx])
    np.testing.assert_allclose(weighted.kernel_spectrum_, repeated.kernel_spectrum_, rtol=1e-6)

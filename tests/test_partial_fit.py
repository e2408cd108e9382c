"""``partial_fit`` of the minibatch estimators: one epoch per call, continuing the model, as in MLP."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.preprocessing import StandardScaler

from skflow import RKHSNODEClassifier, VarProNetClassifier, VarProNetRegressor, VarProSHLRegressor

SMALL = {
    RKHSNODEClassifier: dict(n_layers=2, n_features=64, max_iter=1, batch_size=32),
    VarProNetClassifier: dict(max_iter=1, batch_size=32, early_stopping=False,
                              module_kwargs={"hidden_layer_sizes": (16,)}),
    VarProNetRegressor: dict(max_iter=1, batch_size=32, early_stopping=False,
                             module_kwargs={"hidden_layer_sizes": (16,)}),
    VarProSHLRegressor: dict(width=32, max_iter=1, batch_size=32, learning_rate=1e-4, early_stopping=False),
}


def _data(cls, n=240):
    if cls in (RKHSNODEClassifier, VarProNetClassifier):
        X, y = make_classification(n, 5, n_informative=3, n_redundant=0, n_classes=3, random_state=0)
    else:
        X, y = make_regression(n, 5, noise=5.0, random_state=0)
    return StandardScaler().fit_transform(X), y


def _kwargs(cls, y):
    return {"classes": np.unique(y)} if cls in (RKHSNODEClassifier, VarProNetClassifier) else {}


def _output(model, X):
    return model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)


@pytest.mark.parametrize("cls", list(SMALL))
def test_first_call_is_one_epoch_of_fit_and_calls_continue(cls):
    X, y = _data(cls)
    params = dict(SMALL[cls], random_state=0, device="cpu", tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = cls(**params).fit(X, y)
        streamed = cls(**params).partial_fit(X, y, **_kwargs(cls, y))
    np.testing.assert_allclose(_output(streamed, X), _output(fitted, X), rtol=1e-10, atol=1e-12)
    assert streamed.n_iter_ == 1 and streamed.stop_reason_ == "max_iter"
    before = streamed.loss_curve_[0]
    for _ in range(5):
        for i in range(0, X.shape[0], 80):  # chunks of a stream
            streamed.partial_fit(X[i:i + 80], y[i:i + 80])
    assert streamed.n_iter_ == 1 + 5 * 3 and streamed.loss_curve_.shape == (16,)
    assert streamed.loss_curve_[-3:].mean() < before  # the stream trains the model
    assert streamed.get_params() == cls(**params).get_params()  # partial_fit sets no parameter


@pytest.mark.parametrize("cls", [RKHSNODEClassifier, VarProNetClassifier])
def test_classes_on_the_first_call(cls):
    X, y = _data(cls)
    model = cls(**SMALL[cls], random_state=0, device="cpu")
    with pytest.raises(ValueError, match="classes="):
        model.partial_fit(X, y)
    assert not hasattr(model, "classes_")
    # a first chunk with two of the three classes: classes_ has all three
    first = y != 2
    model.partial_fit(X[first][:60], y[first][:60], classes=[0, 1, 2])
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    assert model.predict_proba(X).shape == (X.shape[0], 3)
    with pytest.raises(ValueError, match="labels not in classes"):
        model.partial_fit(X[:10], np.full(10, 7))
    with pytest.raises(ValueError, match="differs from the classes"):
        model.partial_fit(X[:10], y[:10], classes=[0, 1])
    with pytest.raises(ValueError, match="balanced"):
        cls(**SMALL[cls], class_weight="balanced", device="cpu").partial_fit(X, y, classes=[0, 1, 2])


def test_partial_fit_after_fit_continues_and_checks_the_shape():
    X, y = _data(VarProNetRegressor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = VarProNetRegressor(**dict(SMALL[VarProNetRegressor], max_iter=3), random_state=0,
                                   device="cpu").fit(X, y)
        model.partial_fit(X, y)
    assert model.n_iter_ == 4
    with pytest.raises(ValueError):
        model.partial_fit(X[:, :3], y)
    assert model.n_iter_ == 4  # a refused call leaves the model as it was

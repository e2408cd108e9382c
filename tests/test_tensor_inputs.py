"""Tensors in, tensors out: torch tensors are validated and fitted on their own device (no round trip through the
host for a CUDA tensor on the fit device); predictions are NumPy (scikit-learn's convention), or, under
``sklearn.set_config(array_api_dispatch=True)``, tensors on the input's device for a tensor input.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn import config_context
from sklearn.base import clone

from skflow import (
    MeanFieldNODERegressor,
    RKHSNODEClassifier,
    VarProNetClassifier,
    VarProNetRegressor,
    VarProSHLRegressor,
)

_SMALL = {
    "node": MeanFieldNODERegressor(n_layers=2, width=16, max_iter=15, device="cpu", random_state=0),
    "rkhs": RKHSNODEClassifier(n_layers=2, n_features=32, max_iter=6, device="cpu", random_state=0),
    "varpro": VarProSHLRegressor(width=16, max_iter=10, device="cpu", random_state=0),
    "varpronet-regressor": VarProNetRegressor(max_iter=5, module_kwargs={"hidden_layer_sizes": (8,)}, device="cpu",
                                              random_state=0),
    "varpronet-classifier": VarProNetClassifier(max_iter=5, module_kwargs={"hidden_layer_sizes": (8,)},
                                                device="cpu", random_state=0),
}
_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")


def _data(classifier, n=90, d=5):
    rng = np.random.RandomState(0)
    X = rng.randn(n, d)
    y = X @ rng.randn(d) + 0.1 * rng.randn(n)
    return X, (y > 0).astype(np.int64) if classifier else y


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clone(est).fit(X, y)


@pytest.fixture
def dispatch(monkeypatch):
    """scikit-learn's array API dispatch on (it asks for SCIPY_ARRAY_API=1 in the environment; array-api-compat is
    vendored in scikit-learn)."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    with config_context(array_api_dispatch=True):
        yield


def _is_classifier(name):
    return name in ("rkhs", "varpronet-classifier")


@pytest.mark.parametrize("name", list(_SMALL))
def test_cpu_tensors_in_numpy_out(name):
    """Without dispatch: tensors are accepted and the predictions are NumPy, equal to the NumPy fit's."""
    X, y = _data(_is_classifier(name))
    ref = _fit(_SMALL[name], X, y)
    est = _fit(_SMALL[name], torch.as_tensor(X), torch.as_tensor(y))
    assert est.n_features_in_ == X.shape[1]
    for method in _METHODS:
        if hasattr(est, method):
            out = getattr(est, method)(torch.as_tensor(X))
            assert isinstance(out, np.ndarray), method
            np.testing.assert_allclose(out, getattr(ref, method)(X), rtol=1e-10, atol=1e-12, err_msg=method)
    assert est.score(torch.as_tensor(X), torch.as_tensor(y)) == pytest.approx(ref.score(X, y))


@pytest.mark.parametrize("name", list(_SMALL))
def test_dispatch_tensors_in_tensors_out(name, dispatch):
    X, y = _data(_is_classifier(name))
    with config_context(array_api_dispatch=False):
        ref = _fit(_SMALL[name], X, y)
    Xt = torch.as_tensor(X)
    est = _fit(_SMALL[name], Xt, torch.as_tensor(y))  # used to raise "asarray(): argument 'dtype' must be ..."
    for method in _METHODS:
        if not hasattr(est, method):
            continue
        out = getattr(est, method)(Xt)
        assert isinstance(out, torch.Tensor) and out.device == Xt.device, method
        np.testing.assert_allclose(out.numpy(), getattr(ref, method)(X), rtol=1e-10, atol=1e-12, err_msg=method)
        assert isinstance(getattr(est, method)(X), np.ndarray), method  # NumPy in, NumPy out
    if _is_classifier(name):
        assert est.predict(Xt).dtype == torch.int64
    assert isinstance(est.score(Xt, torch.as_tensor(y)), float)
    # NumPy inputs under dispatch: NumPy everywhere, as before
    np.testing.assert_allclose(_fit(_SMALL[name], X, y).predict(X), ref.predict(X), rtol=1e-10, atol=1e-12)


def test_dispatch_with_string_labels_predicts_numpy_labels(dispatch):
    """A tensor cannot hold strings: with string labels, predict returns the NumPy array of labels (the
    probabilities are tensors)."""
    X, y = _data(True)
    labels = np.array(["no", "yes"])[y]
    est = _fit(_SMALL["rkhs"], torch.as_tensor(X), labels)
    pred = est.predict(torch.as_tensor(X))
    assert isinstance(pred, np.ndarray) and set(pred) <= {"no", "yes"}
    assert isinstance(est.predict_proba(torch.as_tensor(X)), torch.Tensor)


@pytest.mark.parametrize("name", ["node", "rkhs", "varpro"])
def test_float32_tensors_are_cast_to_the_fit_dtype(name):
    X, y = _data(_is_classifier(name))
    ref = _fit(_SMALL[name], X.astype(np.float32), y)
    est = _fit(_SMALL[name], torch.as_tensor(X, dtype=torch.float32), y)
    np.testing.assert_allclose(est.predict(torch.as_tensor(X, dtype=torch.float32)), ref.predict(X.astype(np.float32)),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["node", "rkhs"])
def test_bad_tensors_give_clear_errors(name):
    X, y = _data(_is_classifier(name))
    est = clone(_SMALL[name])
    bad = torch.as_tensor(X).clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        est.fit(bad, y)
    bad[2, 1] = float("inf")
    with pytest.raises(ValueError, match="infinity"):
        est.fit(bad, y)
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.fit(torch.as_tensor(X[:, 0]), y)
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(torch.zeros((0, 3), dtype=torch.float64), y[:0])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(torch.as_tensor(X), y[:-1])
    with pytest.raises(TypeError, match="torch sparse tensors"):
        est.fit(torch.as_tensor(X).to_sparse(), y)
    assert not hasattr(est, "flow_")
    est = _fit(est, torch.as_tensor(X), y)
    with pytest.raises(ValueError, match="X has 3 features"):
        est.predict(torch.as_tensor(X[:, :3]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(_SMALL))
def test_cuda_tensors_are_fitted_on_the_device(name, dispatch, monkeypatch):
    """A CUDA tensor is validated and fitted where it is: no copy of X to the host (only the bounded subsamples of
    the diagnostics are), and the predictions come back on the device."""
    X, y = _data(_is_classifier(name), n=1500)
    Xc, yc = torch.as_tensor(X, device="cuda"), torch.as_tensor(y, device="cuda")
    to_host = []
    cpu = torch.Tensor.cpu

    def spy(self, *args, **kwargs):
        if self.is_cuda:
            to_host.append(tuple(self.shape))
        return cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", spy)
    est = _fit(clone(_SMALL[name]).set_params(device="cuda", batch_size=None), Xc, yc)
    assert est.device_.type == "cuda"
    assert all(shape[0] < X.shape[0] * 0.8 or len(shape) < 2 or shape[1] != X.shape[1] for shape in to_host), \
        to_host  # the training rows of X never went to the host
    out = est.predict(Xc)
    assert isinstance(out, torch.Tensor) and out.device.type == "cuda"
    monkeypatch.setattr(torch.Tensor, "cpu", cpu)
    with config_context(array_api_dispatch=False):
        ref = _fit(clone(_SMALL[name]).set_params(device="cuda", batch_size=None), X, y)
    np.testing.assert_allclose(out.cpu().numpy(), ref.predict(X), rtol=1e-8, atol=1e-10)

"""Saving and loading fitted estimators: pickle, joblib and skops (a pickled state holds no torch object), the
versions stamped in a pickle, and a model trained on a GPU loaded on a machine without one."""

import copy
import io
import os
import pickle
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
import sklearn
import torch
from sklearn.exceptions import InconsistentVersionWarning as SklearnInconsistentVersionWarning
from sklearn.feature_selection import RFE, SelectFromModel

import skflow
from skflow import VarProNetRegressor, VarProSHLRegressor
from skflow.exceptions import InconsistentVersionWarning
from skflow.flows._flow import Flow

sio = pytest.importorskip("skops.io")


def _torch_objects(value, path="state", seen=None):
    """Paths of the torch objects (tensors, dtypes, devices, modules, generators) in a pickled state."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return []
    seen.add(id(value))
    if isinstance(value, (torch.Tensor, torch.dtype, torch.device, torch.nn.Module, torch.Generator)):
        return [path]
    if isinstance(value, Flow):
        value = value.__getstate__()
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _torch_objects(v, f"{path}[{k!r}]", seen)]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _torch_objects(v, f"{path}[{i}]", seen)]
    return []


def _assert_same(a, b, name):
    """``a == b`` for the fitted attributes of two estimators: arrays exactly, containers item by item."""
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(b, a, err_msg=name)
    elif isinstance(a, dict):
        assert type(b) is type(a) and set(b) == set(a), name
        for k in a:
            _assert_same(a[k], b[k], f"{name}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(b) == len(a), name
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{name}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), name
    elif isinstance(a, (int, float, str, bool, type(None), np.generic, torch.device, torch.dtype)):
        assert b == a, name


def _assert_same_model(spec, m, m2, Xt):
    np.testing.assert_array_equal(m2.predict(Xt), m.predict(Xt))
    np.testing.assert_array_equal(spec.output(m2, Xt), spec.output(m, Xt))
    if spec.is_classifier:
        np.testing.assert_array_equal(m2.predict_proba(Xt), m.predict_proba(Xt))
    assert set(vars(m2)) == set(vars(m))
    for name, value in vars(m).items():
        _assert_same(value, getattr(m2, name), name)


@pytest.fixture
def fitted(spec, dataset, quiet_fit):
    X, y, Xt, _ = dataset
    return quiet_fit(spec.make(random_state=0), X, y), Xt


def test_pickled_state_holds_no_torch_object(spec, fitted):
    m, _ = fitted
    state = m.__getstate__()
    assert not _torch_objects(state)
    assert state["_skflow_version"] == skflow.__version__ and state["_sklearn_version"] == sklearn.__version__


def test_skops_round_trip(spec, fitted):
    m, Xt = fitted
    data = sio.dumps(m)
    untrusted = sio.get_untrusted_types(data=data)
    assert set(untrusted) <= set(skflow.skops_trusted_types()), set(untrusted) - set(skflow.skops_trusted_types())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same versions: no InconsistentVersionWarning
        m2 = sio.loads(data, trusted=skflow.skops_trusted_types())
    _assert_same_model(spec, m, m2, Xt)
    assert m2.device_ == torch.device("cpu")
    if "module_" in vars(m):
        assert m2.module_ is m2.flow_.module and not m2.module_.training


def test_skops_refuses_what_it_is_not_told_to_trust(fitted):
    m, _ = fitted
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.loads(sio.dumps(m))


def test_pickle_and_joblib_round_trips(spec, fitted):
    m, Xt = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_same_model(spec, m, pickle.loads(pickle.dumps(m)), Xt)
        buffer = io.BytesIO()
        joblib.dump(m, buffer)
        buffer.seek(0)
        _assert_same_model(spec, m, joblib.load(buffer), Xt)
    m2 = copy.deepcopy(m)
    _assert_same_model(spec, m, m2, Xt)
    assert m2.flow_ is not m.flow_


def test_an_unfitted_estimator_round_trips(spec):
    est = spec.make(random_state=0)
    for loaded in (pickle.loads(pickle.dumps(est)), sio.loads(sio.dumps(est), trusted=skflow.skops_trusted_types())):
        assert loaded.get_params() == est.get_params() and not hasattr(loaded, "flow_")


def test_a_pickle_from_before_the_portable_state_loads(spec, fitted):
    """A state with torch objects (as pickled before tensors were stored as NumPy arrays) is still accepted."""
    m, Xt = fitted
    state = dict(vars(m))  # torch tensors, dtype and device as they are; no version stamped
    m2 = type(m).__new__(type(m))
    with pytest.warns(InconsistentVersionWarning, match="from skflow version unknown"):
        m2.__setstate__(state)
    np.testing.assert_array_equal(spec.output(m2, Xt), spec.output(m, Xt))


def test_varpronet_with_a_module_instance_cannot_go_through_skops(regression_data, quiet_fit):
    X, y, Xt, _ = regression_data
    module = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 8), torch.nn.Tanh()).double()
    m = quiet_fit(VarProNetRegressor(module=module, max_iter=3, random_state=0, device="cpu"), X, y)
    with pytest.raises(TypeError, match=r"skops cannot store the torch.nn.Module Sequential.*pickle or joblib"):
        sio.dumps(m)
    m2 = pickle.loads(pickle.dumps(m))  # pickle keeps working
    np.testing.assert_array_equal(m2.predict(Xt), m.predict(Xt))
    assert m2.module_ is m2.flow_.module


def test_varpronet_with_a_users_module_class_round_trips_once_trusted(regression_data, quiet_fit):
    X, y, Xt, _ = regression_data
    m = quiet_fit(VarProNetRegressor(module=_Features, module_kwargs={"width": 8}, max_iter=3, random_state=0,
                                     device="cpu"), X, y)
    data = sio.dumps(m)
    extra = set(sio.get_untrusted_types(data=data)) - set(skflow.skops_trusted_types())
    assert extra == {f"{__name__}._Features"}  # the user's class: for the user to trust, not skflow
    m2 = sio.loads(data, trusted=[*skflow.skops_trusted_types(), *extra])
    np.testing.assert_array_equal(m2.predict(Xt), m.predict(Xt))
    assert isinstance(m2.module_, _Features) and m2.module_ is m2.flow_.module


class _Features(torch.nn.Module):
    def __init__(self, n_features_in, width=4):
        super().__init__()
        self.linear = torch.nn.Linear(n_features_in, width)
        self.register_buffer("shift", torch.zeros(width))

    def forward(self, X):
        return torch.tanh(self.linear(X) + self.shift)


# ---------------------------------------------------------------------------------------------- versions


def test_another_skflow_version_warns(spec, fitted, monkeypatch):
    m, Xt = fitted
    monkeypatch.setattr(skflow, "__version__", "0.0.1")
    blob = pickle.dumps(m)
    monkeypatch.undo()
    with pytest.warns(InconsistentVersionWarning) as record:
        m2 = pickle.loads(blob)
    w = record[0].message
    assert (w.estimator_name, w.original_version, w.current_version) == (spec.name, "0.0.1", skflow.__version__)
    assert record[0].filename == __file__  # attributed to the pickle.loads line
    assert "_skflow_version" not in vars(m2) and "_sklearn_version" not in vars(m2)
    np.testing.assert_array_equal(spec.output(m2, Xt), spec.output(m, Xt))
    assert issubclass(InconsistentVersionWarning, UserWarning)
    assert "from skflow version 0.0.1 when using version" in str(w)


def test_another_sklearn_version_warns_with_sklearns_warning(fitted):
    m, _ = fitted
    state = m.__getstate__()
    state["_sklearn_version"] = "0.1"
    m2 = type(m).__new__(type(m))
    with pytest.warns(SklearnInconsistentVersionWarning) as record:
        m2.__setstate__(state)
    assert record[0].message.original_sklearn_version == "0.1"
    assert not any(issubclass(w.category, InconsistentVersionWarning) for w in record)


# ---------------------------------------------------------------------------------------------- a real GPU

_LOAD_ON_CPU = """
import pickle, sys
import numpy as np
import torch
assert not torch.cuda.is_available()
with open(sys.argv[1], "rb") as f:
    m, Xt = pickle.load(f)
assert m.device_ == torch.device("cpu")
out = m.decision_function(Xt) if hasattr(m, "predict_proba") else m.predict(Xt)
np.save(sys.argv[2], out)
"""


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trained_on_a_gpu_loads_in_a_process_without_one(spec, dataset, quiet_fit, tmp_path):
    X, y, Xt, _ = dataset
    m = quiet_fit(spec.make(device="cuda", random_state=0), X, y)
    assert m.device_.type == "cuda"
    expected = spec.output(m, Xt)
    path = tmp_path / "model.pkl"
    with open(path, "wb") as f:
        pickle.dump((m, Xt), f)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    root = os.path.dirname(os.path.dirname(os.path.abspath(skflow.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    subprocess.run([sys.executable, "-c", _LOAD_ON_CPU, str(path), str(tmp_path / "out.npy")], env=env, check=True,
                   timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-10, atol=1e-12)
    data = sio.dumps(m)  # skops too, loaded here on the GPU's machine
    m2 = sio.loads(data, trusted=skflow.skops_trusted_types())
    np.testing.assert_allclose(spec.output(m2, Xt), expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------- names


def test_no_estimator_has_coef_or_feature_importances(spec, fitted):
    """The outer weights are per hidden unit (``outer_weights_``): a ``coef_`` would be read by scikit-learn's
    feature selectors as a per-input importance."""
    m, _ = fitted
    assert not hasattr(m, "coef_") and not hasattr(m, "feature_importances_")
    if spec.id.startswith("varpro"):  # one row per hidden unit
        assert m.outer_weights_.shape[0] == (m.features_.shape[0] if spec.id == "varpro" else m.width_)


def test_feature_selectors_refuse_the_outer_weights(regression_data):
    X, y, _, _ = regression_data
    message = r"coef_.*feature_importances_"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=message):
            RFE(VarProSHLRegressor(max_iter=5), n_features_to_select=5).fit(X, y)
        selector = SelectFromModel(VarProSHLRegressor(max_iter=5)).fit(X, y)
        with pytest.raises(ValueError, match=message):
            selector.transform(X)
        with pytest.raises(ValueError, match=message):
            SelectFromModel(VarProSHLRegressor(max_iter=5)).fit_transform(X, y)

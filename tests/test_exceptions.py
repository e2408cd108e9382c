"""skflow.exceptions: its warn helper attributes every warning from fit to the user's line, not to skflow's."""

import pathlib
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skflow
from skflow import DivergenceWarning, MeanFieldNODERegressor
from skflow.exceptions import warn


def _small_node(**params):
    # a few iterations of a tiny NODE: max_iter is reached before the stopping rule triggers
    params = {"n_layers": 2, "width": 8, "max_iter": 2, "tol": 1e-1, "early_stopping": False, "compile": False,
              "random_state": 0, **params}
    return MeanFieldNODERegressor(**params)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    return X, np.sin(X[:, 0]) + 0.1 * X[:, 1]


def _only(record, category):
    caught = [w for w in record if issubclass(w.category, category)]
    assert caught, f"no {category.__name__} among {[w.category.__name__ for w in record]}"
    return caught


def test_warn_names_the_first_frame_outside_skflow():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warn("direct", UserWarning)
        line = _line_before()
    (w,) = record
    assert (w.filename, w.lineno, w.category) == (__file__, line, UserWarning)


def _line_before():
    import inspect

    return inspect.currentframe().f_back.f_lineno - 1


def test_convergence_warning_from_fit_names_the_callers_line(data):
    X, y = data
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _small_node().fit(X, y)
        line = _line_before()
    for w in _only(record, ConvergenceWarning):
        assert (w.filename, w.lineno) == (__file__, line)


def test_divergence_warning_from_fit_names_the_callers_line(data):
    X, y = data
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _small_node(learning_rate=1e12, max_iter=20).fit(X, y)
        line = _line_before()
    for w in _only(record, DivergenceWarning):
        assert (w.filename, w.lineno) == (__file__, line)


def test_warning_through_pipeline_and_grid_search_names_the_callers_line(data):
    # scikit-learn's and joblib's frames are skipped too: the warning names the user's Pipeline / search call
    X, y = data
    pipe = make_pipeline(StandardScaler(), _small_node())
    search = GridSearchCV(_small_node(), {"width": [4, 8]}, cv=2, n_jobs=1)
    for meta in (pipe, search):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            meta.fit(X, y)
            line = _line_before()
        for w in _only(record, ConvergenceWarning):
            assert (w.filename, w.lineno) == (__file__, line)


def test_every_warning_of_skflow_goes_through_warn():
    # a warnings.warn call elsewhere would name a line of skflow (or need a stacklevel that breaks when the call
    # moves deeper or shallower under fit)
    root = pathlib.Path(skflow.__file__).parent
    direct = [f"{path.relative_to(root)}:{n}" for path in sorted(root.rglob("*.py")) if path.name != "exceptions.py"
              for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "warnings.warn(" in line]
    assert not direct, f"use skflow.exceptions.warn instead of warnings.warn at {direct}"

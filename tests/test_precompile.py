"""Compiled speed by default: a fit whose kernels are not built runs eagerly and builds them in the background, so
that the next fit of the same shape runs compiled; ``python -m skflow.precompile`` builds them ahead of time."""

import numpy as np
import pytest
from sklearn.datasets import make_friedman1

from skflow import MeanFieldNODERegressor, VarProSHLRegressor
from skflow.precompile import pending_builds, precompile, set_background_builds, wait_for_builds


@pytest.fixture
def background():
    previous = set_background_builds(True)
    yield
    wait_for_builds(600)
    set_background_builds(previous)


def test_a_short_fit_never_waits_and_the_next_one_runs_compiled(background, fresh_kernels):
    X, y = make_friedman1(200, 7, random_state=0)
    params = dict(n_layers=2, width=16, max_iter=5, early_stopping=False, random_state=0, device="cpu")
    first = MeanFieldNODERegressor(**params).fit(X, y)
    assert not first.flow_.compiled  # eager: nothing was built
    assert wait_for_builds(600) == 0 and not pending_builds()
    second = MeanFieldNODERegressor(**params).fit(X, y)
    if not second.flow_.compiled:
        pytest.skip("torch.compile cannot build kernels on this machine (the fits stay eager)")
    np.testing.assert_allclose(second.predict(X), first.predict(X), rtol=1e-8, atol=1e-8)
    # a fit with compile=False never starts a build
    MeanFieldNODERegressor(**{**params, "n_layers": 3}, compile=False).fit(X, y)
    assert not pending_builds()


def test_background_builds_can_be_turned_off(fresh_kernels):
    previous = set_background_builds(False)
    try:
        X, y = make_friedman1(100, 5, random_state=0)
        MeanFieldNODERegressor(n_layers=2, width=8, max_iter=2, random_state=0, device="cpu").fit(X, y)
        assert not pending_builds()
    finally:
        set_background_builds(previous)


def test_precompile_builds_what_a_default_fit_uses(fresh_kernels):
    times = precompile(["varpro"], n_features=5, verbose=False, width=16)
    assert set(times) == {("varpro", "float64")}
    X, y = make_friedman1(100, 5, random_state=0)
    model = VarProSHLRegressor(width=16, max_iter=2, early_stopping=False, device="cpu").fit(X, y)
    built = any(k.is_built("cpu", model.flow_.parameters()[0].dtype) for k in [model.flow_._graph()])
    if not built:
        pytest.skip("torch.compile cannot build kernels on this machine")
    assert model.flow_.compiled  # compile='auto' runs what precompile built

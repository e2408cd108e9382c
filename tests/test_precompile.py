"""Compiled speed by default: a fit whose step graph is not built runs eagerly and asks for it to be built in a
background process, so that later fits of the same shape, in this process or another, run compiled from the
package on disk; ``python -m skflow.precompile`` builds the packages ahead of time."""

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import make_friedman1

from skflow import MeanFieldNODERegressor, VarProSHLRegressor
from skflow.flows import _aot
from skflow.precompile import cache_dir, pending_builds, precompile, set_background_builds, wait_for_builds

PARAMS = dict(n_layers=2, width=16, max_iter=5, early_stopping=False, random_state=0, device="cpu")


@pytest.fixture
def background():
    previous = set_background_builds(True)
    yield
    wait_for_builds(600)
    set_background_builds(previous)


def _package_failed():
    folder = cache_dir()
    return os.path.isdir(folder) and any(name.endswith(".failed") for name in os.listdir(folder))


def test_a_short_fit_never_waits_and_the_next_one_runs_compiled(background, fresh_kernels):
    X, y = make_friedman1(200, 7, random_state=0)
    first = MeanFieldNODERegressor(**PARAMS).fit(X, y)
    assert first.flow_.compiled == "auto" and not first.flow_.graph_live  # eager: nothing was built
    # ... and its graph is being built in another process, then the depth-generic layer graphs, in the same one
    assert sorted(os.path.basename(p).split("-")[0] for p in pending_builds()) == [
        "adjoint_block", "layer_adjoint", "layer_forward"]
    assert wait_for_builds(600) == 0 and not pending_builds()
    if _package_failed():
        pytest.skip("AOTInductor cannot build packages on this machine (the fits stay eager)")
    second = MeanFieldNODERegressor(**PARAMS).fit(X, y)
    assert second.flow_.graph_live  # the package on disk, loaded: compiled steps without a build
    np.testing.assert_allclose(second.predict(X), first.predict(X), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(second.history_["risk"], first.history_["risk"], rtol=1e-10)
    # another process finds the package on disk and runs compiled from its first step
    code = ("from sklearn.datasets import make_friedman1; from skflow import MeanFieldNODERegressor as M; "
            f"X, y = make_friedman1(300, 7, random_state=1); m = M(**{PARAMS!r}).fit(X, y); "
            "print(m.flow_.graph_live)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr[-2000:]
    # a fit with compile=False never asks for a build
    MeanFieldNODERegressor(**{**PARAMS, "n_layers": 3}, compile=False).fit(X, y)
    assert not pending_builds()


def test_a_fit_switches_to_the_package_when_it_lands(fresh_kernels, monkeypatch):
    """A package that appears on disk during a fit is picked up at the next look (at most every POLL_SECONDS)."""
    monkeypatch.setattr(_aot, "POLL_SECONDS", 0.0)
    X, y = make_friedman1(120, 5, random_state=0)
    model = MeanFieldNODERegressor(**{**PARAMS, "max_iter": 1}).fit(X, y)
    flow = model.flow_
    Xt = flow.U.new_tensor(X[:, :5])
    Yt = flow.U.new_tensor(y[:, None])
    graph = flow._graph().aot
    S, M, D = flow.U.shape
    block_args = (Xt, Yt, flow.W, flow.b, flow.scaled_outer_weights(), Xt.new_zeros(()),
                  Xt.new_zeros((S, D, M)), Xt.new_zeros((S, D, M)), Xt.new_zeros((S, M)))
    flow.step(Xt, Yt, 0.0)
    assert not flow.graph_live
    try:
        _aot.build_package(graph.spec(block_args), graph.path(block_args))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"AOTInductor cannot build packages on this machine ({type(exc).__name__})")
    flow.step(Xt, Yt, 0.0)
    assert flow.graph_live


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
    if _package_failed() or not os.path.isdir(cache_dir()):
        pytest.skip("AOTInductor cannot build packages on this machine")
    X, y = make_friedman1(100, 5, random_state=0)
    model = VarProSHLRegressor(width=16, max_iter=2, early_stopping=False, device="cpu").fit(X, y)
    assert model.flow_.compiled == "auto" and model.flow_.graph_live  # compile='auto' runs what precompile built


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["MeanFieldNODERegressor", "VarProSHLRegressor"])
def test_cuda_packages_match_eager(fresh_kernels, name):
    """On a GPU the same path: compile=True builds a CUDA package, which gives the eager fit to rounding, and a
    default fit of the same shape then runs it from disk."""
    import skflow

    X, y = make_friedman1(300, 6, random_state=0)
    Est = getattr(skflow, name)
    kw = dict(width=32, max_iter=5, early_stopping=False, random_state=0, device="cuda", dtype="float64")
    if name == "MeanFieldNODERegressor":
        kw["n_layers"] = 3
    eager = Est(compile=False, **kw).fit(X, y)
    compiled = Est(compile=True, **kw).fit(X, y)
    assert compiled.flow_.graph_live
    np.testing.assert_allclose(compiled.predict(X), eager.predict(X), rtol=1e-8, atol=1e-10)
    again = Est(**kw).fit(X, y)
    assert again.flow_.compiled == "auto" and again.flow_.graph_live


def test_an_unwritable_cache_leaves_the_fits_eager(fresh_kernels, monkeypatch, tmp_path):
    """A cache folder that cannot be created (a read-only home, say) never breaks a fit: it runs eagerly."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SKFLOW_CACHE_DIR", str(blocker / "cache"))
    previous = set_background_builds(True)
    try:
        X, y = make_friedman1(100, 5, random_state=0)
        model = MeanFieldNODERegressor(**PARAMS).fit(X, y)
        assert not model.flow_.graph_live and not pending_builds()
    finally:
        set_background_builds(previous)


def _packages():
    folder = cache_dir()
    return sorted(n for n in os.listdir(folder) if n.endswith(".pt2")) if os.path.isdir(folder) else []


@pytest.mark.parametrize("name", ["MeanFieldNODERegressor", "RKHSNODEClassifier", "VarProSHLRegressor"])
def test_one_package_serves_every_width_and_state_dimension(fresh_kernels, name):
    """The packages leave the width, the state dimension (NODE: ``extra_dims``) and VarPro's input dimension
    symbolic: the package a first shape built runs a second one, from disk, with the eager fit's results."""
    import skflow

    Est = getattr(skflow, name)
    X, y = make_friedman1(150, 6, random_state=0)
    y = (y - y.mean()) / y.std()
    X2 = X[:, :5] if name == "VarProSHLRegressor" else X  # VarPro: another input dimension too
    if name == "RKHSNODEClassifier":
        y = (y > 0).astype(int)
    base = dict(max_iter=3, random_state=0, device="cpu")
    if name != "RKHSNODEClassifier":
        base["early_stopping"] = False
    if name == "VarProSHLRegressor":
        base["learning_rate"] = 1e-3  # a step that 3 iterations take without overshooting
    first, second = ({"width": 16}, {"width": 24}) if name != "RKHSNODEClassifier" else (
        {"n_features": 16}, {"n_features": 24})
    if name == "MeanFieldNODERegressor":
        first, second = {**first, "n_layers": 2}, {**second, "n_layers": 2, "extra_dims": 3}
    Est(**base, **first, compile=True).fit(X, y)
    built = _packages()
    if not built:
        pytest.skip("AOTInductor cannot build packages on this machine")
    model = Est(**base, **second).fit(X2, y)
    assert model.flow_.compiled == "auto" and model.flow_.graph_live  # the first shape's package, from disk
    assert _packages() == built
    eager = Est(**base, **second, compile=False).fit(X2, y)
    predict = getattr(model, "decision_function", model.predict)
    np.testing.assert_allclose(predict(X2), getattr(eager, "decision_function", eager.predict)(X2),
                               rtol=1e-7, atol=1e-9)


def test_a_new_depth_runs_the_depth_generic_layer_graphs(background, fresh_kernels):
    """A fit whose own graph is not on disk runs the layer graphs (every depth, width and state dimension) where
    they are, with the eager fit's results, while its own graph is built; then its own graph."""
    X, y = make_friedman1(200, 7, random_state=0)
    MeanFieldNODERegressor(**PARAMS).fit(X, y)
    assert wait_for_builds(600) == 0
    if _package_failed():
        pytest.skip("AOTInductor cannot build packages on this machine (the fits stay eager)")
    deeper = {**PARAMS, "n_layers": 3, "width": 24, "extra_dims": 2}
    model = MeanFieldNODERegressor(**deeper).fit(X, y)
    assert model.flow_.graph_tier == "layers"
    assert [os.path.basename(p).split("-")[0] for p in pending_builds()] == ["adjoint_block"]
    eager = MeanFieldNODERegressor(**deeper, compile=False).fit(X, y)
    np.testing.assert_allclose(model.predict(X), eager.predict(X), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.history_["risk"], eager.history_["risk"], rtol=1e-10)
    assert wait_for_builds(600) == 0
    assert MeanFieldNODERegressor(**deeper).fit(X, y).flow_.graph_tier == "shape"


def test_precompile_builds_the_depth_generic_tier(fresh_kernels):
    """``precompile`` builds the layer graphs too: a fit of another depth then runs compiled from its first step."""
    precompile(["rkhs"], n_features=5, verbose=False, n_layers=2)
    if _package_failed() or not _packages():
        pytest.skip("AOTInductor cannot build packages on this machine")
    assert sorted(name.split("-")[0] for name in _packages()) == ["adjoint_block", "layer_adjoint", "layer_forward"]
    X, y = make_friedman1(120, 5, random_state=0)
    from skflow import RKHSNODEClassifier

    model = RKHSNODEClassifier(n_layers=4, max_iter=2, random_state=0, device="cpu").fit(X, (y > 14).astype(int))
    assert model.flow_.graph_tier == "layers"

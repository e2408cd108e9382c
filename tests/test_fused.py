"""The engines' speed paths change no result: row blocks, fused kernels compiled or not, and the fallback.

Each test runs the same computation two ways and compares them, so a block that drops rows, a kernel that
differs from its eager definition or a fallback that changes the model makes it fail.
"""

import warnings

import numpy as np
import pytest
import torch
import torch._inductor

import skflow
from skflow.exceptions import CompileFallbackWarning
from skflow.flows import _fused
from skflow.flows._flow import row_blocks
from skflow.flows.node import MeanFieldSHLFlow, init_particles
from skflow.flows.rkhs import RKHSFlow, init_random_features


def _node(N=257, d=3, S=4, M=16, seed=0, dtype=torch.float64, activation="cos"):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    Y = torch.sin(X.sum(1, keepdim=True))
    U, W, b = init_particles(S, M, d + 2, generator=g)
    U = 0.5 * torch.randn(U.shape, generator=g, dtype=torch.float64)
    flow = MeanFieldSHLFlow(U, W, b, d, 1, activation=activation, output_scale=2.0)
    return flow.to(dtype=dtype), X.to(dtype), Y.to(dtype)


def _rkhs(N=257, d=3, K=3, S=4, M=32, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    Y = torch.nn.functional.one_hot(torch.randint(K, (N,), generator=g), K).double()
    W, b = init_random_features(M, d + K, generator=g)
    theta = 0.3 * torch.randn(S, d + K, M, generator=g, dtype=torch.float64)
    flow = RKHSFlow(theta, W, b, d, output_scale=2.0)
    return flow.to(dtype=dtype), X.to(dtype), Y.to(dtype)


def test_row_blocks_cover_every_row_once():
    for n, rows in [(10, 3), (9, 3), (1, 5), (7, 1)]:
        idx = np.concatenate([np.arange(n)[s] for s in row_blocks(n, rows)])
        np.testing.assert_array_equal(idx, np.arange(n))
        assert max(s.stop - s.start for s in row_blocks(n, rows)) <= rows


@pytest.mark.parametrize("make", [_node, _rkhs], ids=["node", "rkhs"])
def test_blocked_step_equals_one_block(make):
    """A budget of a few rows splits the step into many blocks: same risk, gradients and output (float64)."""
    flow, X, Y = make()
    whole = flow.gradients(X, Y)
    out = flow.forward(X)
    flow.workspace_bytes = 7 * flow.bytes_per_row(True)  # blocks of 7 rows, the last one shorter
    assert flow.block_rows(X.device) == 7
    blocked = flow.gradients(X, Y)
    for a, b in zip(whole, blocked):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(flow.forward(X), out, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("make", [_node, _rkhs], ids=["node", "rkhs"])
def test_adjoint_matches_autograd_in_float32(make):
    """The transposed-layout adjoint in float32 agrees with float64 autograd to float32 rounding."""
    flow64, X, Y = make()
    ref = flow64._autograd_gradients(X, Y) if hasattr(flow64, "_autograd_gradients") else \
        flow64.autograd_gradients(X, Y)
    flow32 = flow64.to(dtype=torch.float32)
    got = flow32.gradients(X.float(), Y.float())
    for a, b in zip(got, ref):
        scale = float(b.abs().max())
        assert float((a.double() - b).abs().max()) <= 1e-5 * scale


def _fail_compile(*args, **kwargs):
    def broken(*a, **k):
        raise RuntimeError("no C++ compiler found (simulated)")
    return broken


@pytest.mark.parametrize("name", ["MeanFieldNODERegressor", "RKHSNODEClassifier", "VarProSHLRegressor"])
def test_compile_failure_falls_back_to_identical_eager_results(monkeypatch, fresh_kernels, name):
    """Without a compiler, compile=True warns once and gives the compile=False model bit for bit: the engines
    take their own eager path, not an eager run of the whole-block graph."""
    monkeypatch.setattr(torch, "compile", _fail_compile)
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", _fail_compile())
    X = np.random.default_rng(0).normal(size=(60, 3))
    y = np.sin(X[:, 0])
    kw = {"MeanFieldNODERegressor": dict(width=16, n_layers=3),
          "RKHSNODEClassifier": dict(n_features=16, n_layers=3),
          "VarProSHLRegressor": dict(width=16, solver="gd", learning_rate=1e-3)}[name]
    kw.update(max_iter=5, early_stopping=False, random_state=0)
    if name == "RKHSNODEClassifier":
        y = (y > 0).astype(int)
    Est = getattr(skflow, name)
    eager = Est(compile=False, **kw).fit(X, y)
    with pytest.warns(CompileFallbackWarning, match="compile=False"):
        fallback = Est(compile=True, **kw).fit(X, y)
    np.testing.assert_array_equal(fallback.predict(X), eager.predict(X))
    np.testing.assert_array_equal(fallback.history_["risk"], eager.history_["risk"])
    # the failure is remembered: 'auto' does not try again, and says nothing more
    assert not _fused.decide_compile("auto", 1e30, ("cos",), "cpu", torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        Est(compile="auto", **kw).fit(X, y)


def test_graph_kernels_have_a_code_object_per_key(fresh_kernels):
    """Dynamo caches compiled graphs per code object: each (engine, depth, activation, ...) key must get its own,
    so that models of different depths do not evict each other's graphs (nor count towards one limit)."""
    flows = [_node(S=2)[0], _node(S=3)[0], _node(S=3, activation="tanh")[0]]
    graphs = [f._graph() for f in flows]
    assert len({id(g.fn.__code__) for g in graphs}) == 3
    assert _node(S=2)[0]._graph() is graphs[0]  # built once per key, then shared
    assert graphs[0] in flows[0].compile_kernels()


def test_auto_compiles_only_long_fits(fresh_kernels):
    small = _fused.AUTO_COMPILE_WORK / 10
    assert _fused.decide_compile("auto", small, ("cos",), "cpu", torch.float64) == "auto"  # only what is built
    assert _fused.decide_compile("auto", _fused.AUTO_COMPILE_WORK, ("cos",), "cpu", torch.float64) is True
    assert _fused.decide_compile(True, 0, ("cos",), "cpu", torch.float64) is True
    assert _fused.decide_compile(False, 1e30, ("cos",), "cpu", torch.float64) is False
    # a fit with the defaults on a demo-sized problem never pays a compilation: nothing built, it runs eagerly
    est = skflow.MeanFieldNODERegressor(max_iter=3, random_state=0).fit(np.random.rand(200, 5), np.random.rand(200))
    assert est.flow_.compiled == "auto" and not est.flow_.graph_live
    assert not any(k.is_built("cpu", torch.float64) for k in est.flow_.compile_kernels() if not isinstance(k, str))


def _compiler_available():
    try:
        torch.compile(lambda a: torch.cos(a), dynamic=True)(torch.zeros(3))
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_kernels_match_eager(dtype, fresh_kernels):
    """The compiled fused kernels give the eager step's risk and gradients to float rounding (NODE and RKHS)."""
    if not _compiler_available():
        pytest.skip("torch.compile cannot build kernels on this machine")
    eps = 1e-12 if dtype == torch.float64 else 2e-5
    for make in (_node, _rkhs):
        flow, X, Y = make(dtype=dtype)
        eager = flow.gradients(X, Y)
        out = flow.forward(X)
        flow.compiled = True
        compiled = flow.gradients(X, Y)
        for a, b in zip(eager, compiled):
            assert float((a - b).abs().max()) <= eps * float(a.abs().max())
        assert float((flow.forward(X) - out).abs().max()) <= eps * float(out.abs().max())
    from skflow.flows.varpro import VarProFlow

    g = torch.Generator().manual_seed(1)
    X = torch.randn(150, 3, generator=g, dtype=torch.float64).to(dtype)
    Y = torch.tanh(X[:, :1])
    omega = torch.randn(20, 4, generator=g, dtype=torch.float64).to(dtype)
    steps = []
    for compiled in (False, True):
        flow = VarProFlow(omega.clone(), torch.zeros(20, 1, dtype=dtype), lam=0.1, activation="tanh", solver="varpro")
        flow.compiled = compiled
        steps.append([flow.step(X, Y, 1e-2)["reduced_risk"] for _ in range(3)] + [flow.omega])
    for a, b in zip(*steps):
        assert float((a - b).abs().max()) <= 10 * eps * float(a.abs().max())


@pytest.mark.parametrize("solver, lam", [("varpro", 1e-2), ("varpro", "auto"), ("gd", "auto"), ("two-timescale", 1e-3)])
@pytest.mark.parametrize("domain", ["euclidean", "sphere"])
def test_varpro_blocked_step_equals_one_block(solver, lam, domain):
    """VarPro's Gram matrix, leave-one-out path, gradient and risk summed over blocks of 11 rows: the same steps."""
    from skflow.flows.varpro import VarProFlow

    g = torch.Generator().manual_seed(0)
    N, d, M = 203, 3, 24
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    Y = torch.tanh(X[:, :1] - X[:, 1:2])
    dim = d + 1 if domain == "euclidean" else d
    omega = torch.randn(M, dim, generator=g, dtype=torch.float64)
    if domain == "sphere":
        omega = omega / omega.norm(dim=1, keepdim=True)
    flows = [VarProFlow(omega.clone(), torch.zeros(M, 1, dtype=torch.float64), lam=lam, solver=solver,
                        activation="tanh", domain=domain) for _ in range(2)]
    flows[1].workspace_bytes = 11 * flows[1].bytes_per_row(True)
    records = []
    for flow in flows:
        flow.start(X, Y)
        records.append([flow.step(X, Y, 1e-3) for _ in range(3)])
        flow.finish(X, Y, 3)
    for a, b in zip(*records):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-11, atol=1e-14)
    torch.testing.assert_close(flows[0].omega, flows[1].omega, rtol=1e-11, atol=1e-14)
    torch.testing.assert_close(flows[0].u, flows[1].u, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(flows[0].forward(X), flows[1].forward(X), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("case", ["node-tanh", "rkhs-squared", "varpro-gd", "varpro-two-timescale-sphere"])
def test_compiled_graphs_match_eager_over_uneven_blocks(case, fresh_kernels):
    """The whole-block compiled graphs, over blocks of 37 rows (the last one shorter), give the eager engines'
    gradients and steps in float64 to rounding, for activations, losses, solvers and domains beyond the defaults."""
    if not _compiler_available():
        pytest.skip("torch.compile cannot build kernels on this machine")
    from skflow.flows.varpro import VarProFlow

    if case == "node-tanh":
        flow, X, Y = _node(activation="tanh")
    elif case == "rkhs-squared":
        flow, X, Y = _rkhs()
        flow.loss = "squared"
    else:
        solver, domain = ("gd", "euclidean") if case == "varpro-gd" else ("two-timescale", "sphere")
        g = torch.Generator().manual_seed(2)
        X = torch.randn(203, 3, generator=g, dtype=torch.float64)
        Y = torch.tanh(X[:, :1] - X[:, 1:2])
        omega = torch.randn(24, 4 if domain == "euclidean" else 3, generator=g, dtype=torch.float64)
        if domain == "sphere":
            omega = omega / omega.norm(dim=1, keepdim=True)
        u = torch.randn(24, 1, generator=g, dtype=torch.float64)
        flow = VarProFlow(omega, u, lam=1e-2, solver=solver, activation="tanh", domain=domain)
        flow.start(X, Y)
    flow.workspace_bytes = 37 * flow.bytes_per_row(True)
    flows = [flow.to(), flow.to()]
    flows[1].compiled = True
    records = [[f.step(X, Y, 1e-2) for _ in range(3)] for f in flows]
    for a, b in zip(*records):
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-11, atol=1e-14)
    for a, b in zip(flows[0].parameters(), flows[1].parameters()):
        torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-14)


def test_compiled_fit_matches_eager_fit(fresh_kernels):
    """compile=True through the estimator: the same model as compile=False (float64, to rounding), and the fitted
    engine says it ran compiled."""
    if not _compiler_available():
        pytest.skip("torch.compile cannot build kernels on this machine")
    X = np.random.default_rng(1).normal(size=(150, 3))
    y = np.sin(X[:, 0]) + X[:, 1]
    kw = dict(width=16, n_layers=3, max_iter=10, early_stopping=False, random_state=0)
    eager = skflow.MeanFieldNODERegressor(compile=False, **kw).fit(X, y)
    compiled = skflow.MeanFieldNODERegressor(compile=True, **kw).fit(X, y)
    assert compiled.flow_.compiled and not eager.flow_.compiled
    np.testing.assert_allclose(compiled.predict(X), eager.predict(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(compiled.history_["risk"], eager.history_["risk"], rtol=1e-10)


@pytest.mark.parametrize("make", [_node, _rkhs], ids=["node", "rkhs"])
def test_training_blocks_and_predictions_share_one_euler_sweep(make):
    """The forward part of a training block and the prediction pass are the same sweep: the risk a step records is
    the risk of the model's predictions, bit for bit (cos: the value kernel and the derivative's agree)."""
    flow, X, Y = make()
    R = flow.gradients(X, Y)[0]
    assert torch.equal(R, flow.risk(X, Y))


@pytest.mark.parametrize("make", [_node, _rkhs], ids=["node", "rkhs"])
def test_compiled_graph_is_the_eager_block_function(make, fresh_kernels):
    """The compiled graph is built from the very block function the eager step runs, its constants bound (and
    ``n_total = 1``: sums over rows, divided by N after the sweep); run eagerly it gives the eager step's sums."""
    import importlib

    flow, X, Y = make()
    graph = flow._graph()
    cells = dict(zip(graph.fn.__code__.co_freevars, (c.cell_contents for c in graph.fn.__closure__)))
    block = importlib.import_module(type(flow).__module__).adjoint_block
    key, constants = flow._block_constants()
    assert cells["block"] is block and cells["constants"] == {**constants, "n_total": 1}
    eager = flow.gradients(X, Y)
    if isinstance(flow, MeanFieldSHLFlow):
        S, M, D = flow.U.shape
        UTc = (flow.U.transpose(1, 2) * (1.0 / (S * M))).contiguous()
        args = (X, Y, flow.W, flow.b, UTc, X.new_zeros(()), X.new_zeros((S, D, M)), X.new_zeros((S, D, M)),
                X.new_zeros((S, M)))
    else:
        hc = (2.0 / flow.n_features) ** 0.5 / flow.n_layers
        args = (X, Y, flow.W, flow.b, hc * flow.theta, X.new_zeros(()), torch.zeros_like(flow.theta))
    sums = graph.fn(*args)
    if isinstance(flow, MeanFieldSHLFlow):  # the transposed sums of adjoint_block, as gradients() returns them
        S, M = flow.n_layers, flow.width
        sums = (sums[0], sums[1].transpose(1, 2) / (S * M), sums[2].transpose(1, 2), sums[3])
    else:  # the sums before the factor h sqrt(2/M)
        sums = (sums[0], sums[1] * hc)
    for a, b in zip(eager, sums):
        torch.testing.assert_close(b / X.shape[0], a, rtol=1e-12, atol=1e-15)

"""Engine tests for the VarPro flow (skflow.flows.varpro): projection, envelope gradient, monotonicity."""

import numpy as np
import pytest
import torch

from skflow.datasets import make_teacher_student
from skflow.diagnostics import energy_distance
from skflow.flows.varpro import (
    VarProFlow,
    feature_gradient,
    features,
    kernel_spectrum,
    reduced_risk,
    ridge_projection,
)


def _problem(N, M, d=3, n_out=1, seed=0, domain="euclidean"):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    Y = torch.randn(N, n_out, generator=g, dtype=torch.float64)
    omega = torch.randn(M, d + (domain == "euclidean"), generator=g, dtype=torch.float64)
    if domain == "sphere":
        omega = omega / omega.norm(dim=1, keepdim=True)
    return X, Y, omega


def _risk_np(Phi, Y, u, lam, c):
    N, M = Phi.shape
    r = Phi @ u / M - Y
    return 0.5 * np.sum(r * r) / N + lam * 0.5 * np.sum((u - c) ** 2) / M


@pytest.mark.parametrize("regularization", ["biased", "unbiased"])
@pytest.mark.parametrize("N, M", [(200, 30), (20, 60)], ids=["primal", "dual"])
@pytest.mark.parametrize("n_out", [1, 2])
def test_projection_matches_closed_form(regularization, N, M, n_out):
    X, Y, omega = _problem(N, M, n_out=n_out)
    lam = 1e-2
    Phi, _, _ = features(omega, X, "relu", "euclidean")
    u = ridge_projection(Phi, Y, lam, regularization).numpy()
    # closed form of SPEC §3 in NumPy: (K + lam I) u = Phi^T Y / N + lam c, K = Phi^T Phi / (N M)
    P, Yn = Phi.numpy(), Y.numpy()
    c = 1.0 if regularization == "unbiased" else 0.0
    K = P.T @ P / (N * M)
    u_ref = np.linalg.solve(K + lam * np.eye(M), P.T @ Yn / N + lam * c)
    np.testing.assert_allclose(u, u_ref, rtol=1e-8, atol=1e-10)
    # and it is the minimiser: any perturbation increases the risk of Eq. III.43
    rng = np.random.RandomState(0)
    R_star = _risk_np(P, Yn, u, lam, c)
    for _ in range(5):
        assert _risk_np(P, Yn, u + 1e-3 * rng.randn(*u.shape), lam, c) > R_star


@pytest.mark.parametrize("regularization", ["biased", "unbiased"])
def test_projection_float32_small_lambda(regularization):
    X, Y, omega = _problem(300, 40)
    Phi, _, _ = features(omega, X, "relu", "euclidean")
    u64 = ridge_projection(Phi, Y, 1e-5, regularization)
    u32 = ridge_projection(Phi.float(), Y.float(), 1e-5, regularization)
    assert u32.dtype == torch.float32
    # the solve is done in float64, so only the float32 rounding of Phi is left
    np.testing.assert_allclose(u32.double().numpy(), u64.numpy(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("regularization", ["biased", "unbiased"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("domain", ["euclidean", "sphere"])
@pytest.mark.parametrize("N, M", [(80, 12), (10, 25)], ids=["primal", "dual"])
def test_feature_gradient_matches_finite_differences(regularization, activation, domain, N, M):
    """Envelope theorem (Eq. III.10): grad L = (1/lambda) grad_omega R(omega, u*) with u* held fixed."""
    X, Y, omega = _problem(N, M, d=3, domain=domain, seed=1)
    lam = 1e-2
    _, u_star, _ = reduced_risk(omega, X, Y, lam, regularization, activation, domain)
    G, _ = feature_gradient(omega, u_star, X, Y, lam, regularization, activation, domain)
    rng = np.random.RandomState(2)
    eps = 1e-6
    for _ in range(4):
        V = torch.as_tensor(rng.randn(*omega.shape))
        if domain == "sphere":
            # derivative along a tangent direction (the sphere's gradient is the tangent projection)
            V = V - (V * omega).sum(1, keepdim=True) * omega
        Lp, _, _ = reduced_risk(omega + eps * V, X, Y, lam, regularization, activation, "euclidean"
                                if domain == "euclidean" else "sphere")
        Lm, _, _ = reduced_risk(omega - eps * V, X, Y, lam, regularization, activation, "euclidean"
                                if domain == "euclidean" else "sphere")
        fd = float((Lp - Lm) / (2 * eps))
        an = float((G * V).sum())
        assert abs(fd - an) <= 1e-5 * max(1.0, abs(fd)), (fd, an)


def test_gradient_not_differentiated_through_solve():
    """The closed-form gradient equals autograd of R(omega, u*) with u* detached, not of u*(omega)."""
    X, Y, omega = _problem(50, 10, seed=3)
    lam = 1e-1
    _, u_star, _ = reduced_risk(omega, X, Y, lam, "biased", "tanh", "euclidean")
    w = omega.clone().requires_grad_(True)
    Phi, _, _ = features(w, X, "tanh", "euclidean")
    r = Phi @ u_star / 10 - Y
    R = 0.5 * (r * r).sum() / 50 + lam * 0.5 * (u_star ** 2).sum() / 10
    (R / lam).backward()
    G, _ = feature_gradient(omega, u_star, X, Y, lam, "biased", "tanh", "euclidean")
    np.testing.assert_allclose(G.numpy(), w.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("domain", ["euclidean", "sphere"])
def test_reduced_risk_decreases_monotonically_for_small_tau(domain):
    X, _, omega = _problem(150, 20, d=2, domain=domain, seed=4)
    # a target the model class can represent (a small teacher network), so that L is moderate
    _, _, teacher = _problem(1, 5, d=2, domain=domain, seed=40)
    Phi_t, _, _ = features(teacher, X, "tanh", domain)
    Y = Phi_t.mean(dim=1, keepdim=True)
    u = torch.zeros(20, 1, dtype=torch.float64)
    # a smooth activation: with ReLU, L is only piecewise smooth (kinks at the data points) and a fixed step
    # can chatter across a kink; the ReLU case is covered on the teacher problem below
    flow = VarProFlow(omega.clone(), u, lam=1e-3, regularization="biased", activation="tanh", domain=domain)
    L = [float(flow.step(X, Y, 1e-4)["reduced_risk"]) for _ in range(200)]
    assert np.all(np.diff(L) <= 1e-12 * L[0]), np.max(np.diff(L))
    assert L[-1] < 0.99 * L[0]  # and it actually moved
    if domain == "sphere":
        np.testing.assert_allclose(flow.omega.norm(dim=1).numpy(), 1.0, rtol=1e-12)


def test_step_returns_device_scalars_and_risk_before_update():
    X, Y, omega = _problem(60, 8, seed=5)
    flow = VarProFlow(omega.clone(), torch.zeros(8, 1, dtype=torch.float64), lam=1e-2)
    L0, _, fit0 = reduced_risk(flow.omega, X, Y, 1e-2)
    out = flow.step(X, Y, 1e-3)
    for k in ("risk", "reduced_risk", "pl_ratio"):
        assert isinstance(out[k], torch.Tensor) and out[k].ndim == 0
    assert torch.allclose(out["reduced_risk"], L0) and torch.allclose(out["risk"], fit0)
    assert float(out["pl_ratio"]) > 0


def test_two_timescale_and_gd_decrease_risk():
    X, Y, omega = _problem(120, 16, seed=6)
    for solver in ("two-timescale", "gd"):
        flow = VarProFlow(omega.clone(), torch.zeros(16, 1, dtype=torch.float64), lam=1e-2, solver=solver)
        if solver == "two-timescale":
            flow.project(X, Y)
        R = [float(flow.step(X, Y, 1e-3)["reduced_risk"]) for _ in range(100)]
        assert R[-1] < R[0], solver


def test_stochastic_momentum_average():
    """Eq. III.46: u <- m u + (1 - m) U_bar (first minibatch initialises u)."""
    X, Y, omega = _problem(100, 10, seed=7)
    flow = VarProFlow(omega.clone(), torch.zeros(10, 1, dtype=torch.float64), lam=1e-2, momentum=0.75,
                      stochastic=True)
    flow.step(X[:50], Y[:50], 0.0)
    u1 = flow.u.clone()
    Phi, _, _ = features(flow.omega, X[50:], "relu", "euclidean")
    U_bar = ridge_projection(Phi, Y[50:], 1e-2, "biased")
    flow.step(X[50:], Y[50:], 0.0)
    np.testing.assert_allclose(flow.u.numpy(), (0.75 * u1 + 0.25 * U_bar).numpy(), rtol=1e-12)


def test_kernel_spectrum_primal_dual_agree():
    X, Y, omega = _problem(30, 50, seed=8)
    ev = kernel_spectrum(omega, X, k=5)
    Phi, _, _ = features(omega, X)
    ref = np.sort(np.linalg.eigvalsh((Phi.T @ Phi).numpy() / (30 * 50)))[::-1][:5]
    np.testing.assert_allclose(ev.numpy(), ref, rtol=1e-8, atol=1e-12)


def test_flow_to_moves_snapshots():
    X, Y, omega = _problem(30, 5, seed=9)
    flow = VarProFlow(omega.clone(), torch.zeros(5, 1, dtype=torch.float64), lam=1e-2, store_every=2)
    for _ in range(4):
        flow.step(X, Y, 1e-3)
    assert len(flow.snapshots) == 2
    f32 = flow.to("cpu", torch.float32)
    assert f32.snapshots[0].dtype == torch.float32 and f32.omega.dtype == torch.float32


def test_teacher_student_varpro_beats_two_timescale():
    """Reduced-size §III.6.1: S^1 teacher, lambda = 1e-3, gamma = 100, unbiased, M = 128.

    VarPro: the reduced risk decreases monotonically and the energy distance to the teacher falls below 0.05;
    at a step where two-timescale GD is stable, VarPro reaches a lower reduced risk in as many steps.
    """
    from skflow import VarProSHLRegressor

    X, y, teacher = make_teacher_student(1024, teacher_width=2048, gamma=100, return_teacher=True, random_state=0)
    common = dict(feature_domain="sphere", regularization="unbiased", alpha=1e-3, tol=0, random_state=0,
                  device="cpu")
    vp = VarProSHLRegressor(128, learning_rate=2.0 ** -6, max_iter=1000, store_features_every=1000,
                            **common).fit(X, y)
    L = vp.reduced_risk_curve_
    assert np.all(np.diff(L) <= 1e-12 * L[0])
    assert vp.feature_history_.shape == (2, 128, 2)
    mmd0 = energy_distance(vp.feature_history_[0], teacher)
    mmd = energy_distance(vp.features_, teacher)
    assert mmd < 0.05 and mmd < mmd0 / 5, (mmd, mmd0)
    L_vp, L_tt = [], []
    for solver, store in (("varpro", L_vp), ("two-timescale", L_tt)):
        m = VarProSHLRegressor(128, solver=solver, learning_rate=2.0 ** -10, max_iter=500, **common).fit(X, y)
        store.append(m.reduced_risk(X, y))
    assert L_vp[0] < L_tt[0], (L_vp, L_tt)


def test_the_ridge_solves_and_feature_maps_have_one_home_each():
    """VarPro and VarProNet share the ridge module; the feature maps and the torus live in one module, which the
    data sets use too (no engine in between)."""
    from skflow import datasets
    from skflow.flows import _features, _ridge, varpro, varpronet

    assert varpro.ridge_projection is _ridge.ridge_projection is varpronet.ridge_projection
    assert varpro.ridge_loo_path is _ridge.ridge_loo_path and varpro.select_ridge is _ridge.select_ridge
    assert varpro.features is _features.features and varpro.Torus is _features.Torus
    assert datasets.rbf_features is _features.rbf_features and datasets.RBFKernel is _features.RBFKernel


@pytest.mark.parametrize("solver", ["varpro", "two-timescale", "gd"])
@pytest.mark.parametrize("domain", ["euclidean", "sphere"])
def test_step_sums_are_one_function_over_blocks(solver, domain):
    """The step's sums are :func:`gradient_block` summed over row blocks: one block and 41-row blocks agree, and the
    single-block sums are the function's own output on the whole batch (features reused or recomputed alike)."""
    from skflow.flows.varpro import gradient_block

    X, Y, omega = _problem(150, 24, domain=domain)
    u = torch.randn(24, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    flow = VarProFlow(omega, u, lam=1e-2, solver=solver, activation="tanh", domain=domain)
    whole = flow._gradient_blocks(X, Y)
    kept = flow._gradient_blocks(X, Y, flow._block_features(X))
    for a, b in zip(whole, kept):
        assert torch.equal(a, b)
    zeros = (torch.zeros_like(omega), X.new_zeros(()), torch.zeros_like(u), X.new_zeros(()))
    G, datafit, PtR, trace = gradient_block(X, Y, omega, u, u / 24, *zeros, **flow._block_constants()[1])
    assert torch.equal(0.5 * datafit / 150, whole[1]) and torch.equal(trace / 150, whole[3])
    flow.workspace_bytes = 41 * flow.bytes_per_row(True)
    for a, b in zip(whole, flow._gradient_blocks(X, Y)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)

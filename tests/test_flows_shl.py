"""The mean-field SHL engine against the theory it implements (SPEC section 1).

Every test here compares the engine with an independent computation (finite differences, autograd, a
closed-form kernel, the same flow at another width or depth), so a wrong scaling or sign makes it fail.
"""


import numpy as np
import pytest
import torch

from skflow.diagnostics import convergence_report, kernel_lambda_min, lambda_min, shl_limit_kernel
from skflow.flows._ops import ACTIVATIONS
from skflow.flows.node import MeanFieldSHLFlow, init_particles

SMOOTH = [a for a in ACTIVATIONS if a != "relu"]


def _problem(N=30, d=2, dout=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    Y = torch.sin(X @ torch.randn(d, dout, generator=g, dtype=torch.float64))
    return X, Y


def _flow(S, M, X, Y, seed=0, rho=0.7, alpha=2.0, activation="cos", solver="euler", u_scale=0.0,
          feature_init="gaussian", train_features=True):
    g = torch.Generator().manual_seed(seed)
    D = X.shape[1] + Y.shape[1]
    U, W, b = init_particles(S, M, D, feature_init, rho, generator=g)
    if u_scale:
        U = u_scale * torch.randn(U.shape, generator=g, dtype=torch.float64)  # away from the identity init
    return MeanFieldSHLFlow(U, W, b, X.shape[1], Y.shape[1], activation=activation, output_scale=alpha,
                            solver=solver, train_features=train_features)


def _train(flow, X, Y, tau, n_steps):
    risks = []
    for _ in range(n_steps):
        risks.append(float(flow.step(X, Y, tau)["risk"]))
    return np.array(risks)


@pytest.mark.parametrize("activation", SMOOTH)
@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
def test_velocity_matches_finite_differences(activation, solver):
    """velocity = -(S M) dR/dtheta: central differences of the risk in float64, per particle coordinate."""
    X, Y = _problem(N=12, d=2, dout=2)
    S, M = 3, 5
    flow = _flow(S, M, X, Y, activation=activation, solver=solver, u_scale=1.0)
    vU, vW, vb = flow.velocity(X, Y)
    eps = 1e-6
    rng = np.random.default_rng(0)
    for name, v in (("U", vU), ("W", vW), ("b", vb)):
        P = getattr(flow, name)
        for _ in range(6):
            idx = tuple(int(rng.integers(n)) for n in P.shape)
            old = P[idx].item()
            P[idx] = old + eps
            Rp = flow.risk(X, Y).item()
            P[idx] = old - eps
            Rm = flow.risk(X, Y).item()
            P[idx] = old
            fd = -(S * M) * (Rp - Rm) / (2 * eps)
            assert v[idx].item() == pytest.approx(fd, rel=1e-5, abs=1e-8), (name, idx)


@pytest.mark.parametrize("activation", SMOOTH)
def test_euler_adjoint_matches_autograd(activation):
    """The hand-written discrete adjoint (Eq. 55) equals autograd through the Euler ResNet."""
    X, Y = _problem(N=20, d=3, dout=2)
    flow = _flow(4, 7, X, Y, activation=activation, u_scale=0.8)
    R, gU, gW, gb = flow.gradients(X, Y)
    R2, aU, aW, ab = flow._autograd_gradients(X, Y)
    assert R.item() == pytest.approx(R2.item(), rel=1e-12)
    for g, a in ((gU, aU), (gW, aW), (gb, ab)):
        torch.testing.assert_close(g, a, rtol=1e-10, atol=1e-13)


def test_identity_initialisation_predicts_zero():
    X, Y = _problem()
    flow = _flow(4, 16, X, Y)
    assert torch.all(flow.forward(X) == 0)
    assert flow.risk(X, Y).item() == pytest.approx(0.5 * (Y**2).sum().item() / X.shape[0])


def _risk_at_flow_time(S, M, seed, T=3.0, tau=0.05, N=40):
    X, Y = _problem(N=N, d=2, dout=1, seed=1)
    flow = _flow(S, M, X, Y, seed=seed, rho=0.7, alpha=2.0)
    risks = _train(flow, X, Y, tau, int(round(T / tau)) + 1)
    return risks


def test_risk_against_flow_time_is_width_invariant():
    """Mean-field limit: at a fixed flow time the risk moves little when M goes from 256 to 1024."""
    r256 = _risk_at_flow_time(S=4, M=256, seed=0)
    r1024 = _risk_at_flow_time(S=4, M=1024, seed=1)
    assert r256[-1] < 0.3 * r256[0]  # the flow did move: the comparison is not between two flat curves
    np.testing.assert_allclose(r256, r1024, rtol=0.15)
    # control: with a learning rate in "PyTorch units" (no M factor), a 4x width changes the curve a lot
    X, Y = _problem(N=40, d=2, dout=1, seed=1)
    wrong = _flow(4, 1024, X, Y, seed=1)
    for _ in range(61):
        R, gU, gW, gb = wrong.gradients(X, Y)
        for p, g in zip((wrong.U, wrong.W, wrong.b), (gU, gW, gb)):
            p.sub_(g, alpha=0.05 * 4 * 256)  # the step that M = 256 would take
    assert abs(float(R) - r1024[-1]) > 0.15 * r1024[-1]


def test_risk_against_flow_time_is_depth_invariant():
    """Infinite-depth limit: at a fixed flow time the risk moves little when S goes from 8 to 32."""
    r8 = _risk_at_flow_time(S=8, M=256, seed=0)
    r32 = _risk_at_flow_time(S=32, M=256, seed=1)
    assert r8[-1] < 0.3 * r8[0]
    np.testing.assert_allclose(r8, r32, rtol=0.15)


@pytest.mark.parametrize("feature_init", ["gaussian", "student"])
def test_finite_width_lambda_min_approaches_closed_form(feature_init):
    """lambda_min(Phi Phi^T / M) -> lambda_min of (1/2) Gaussian / Matern kernel as M grows (Cor. II.5.1)."""
    X, Y = _problem(N=20, d=2, dout=1, seed=3)
    rho = 4.0  # a well-conditioned kernel matrix, so that lambda_min is a stable target
    exact = kernel_lambda_min(torch.cat([X, torch.zeros(20, 1, dtype=X.dtype)], 1), feature_init, rho)
    assert exact > 0.05
    errors = []
    for M in (200, 20000):
        flow = _flow(1, M, X, Y, seed=M, rho=rho, feature_init=feature_init)
        K = flow.feature_kernels(X, initial=True)[0]
        errors.append(abs(lambda_min(K) - exact) / exact)
    assert errors[1] < 0.03
    assert errors[1] < errors[0]


def test_finite_width_kernel_matrix_converges_at_monte_carlo_rate():
    X, Y = _problem(N=15, d=2, dout=1, seed=4)
    Z = torch.cat([X, torch.zeros(15, 1, dtype=X.dtype)], 1)
    Kinf = shl_limit_kernel(Z, "gaussian", 0.6)
    errs = []
    for M in (400, 6400):
        K = _flow(1, M, X, Y, seed=7, rho=0.6).feature_kernels(X, initial=True)[0]
        errs.append(float(torch.abs(K - Kinf).max()))
    # 16x more particles: the error shrinks by about 4 (allow 2 for the randomness)
    assert errs[1] < errs[0] / 2


def test_initial_pl_ratio_is_at_least_the_kernel_rate():
    """At u = 0, ||grad R||^2 / R >= 2 alpha^2 lambda_0 / N exactly (the kernel regime of Thm. II.7)."""
    X, Y = _problem(N=20, d=2, dout=1, seed=5)
    for alpha in (0.5, 3.0):
        flow = _flow(3, 200, X, Y, seed=2, alpha=alpha)
        Ks = flow.feature_kernels(X, initial=True)
        lam0 = float(np.mean([lambda_min(K) for K in Ks]))
        assert lam0 > 0
        pl = float(flow.step(X, Y, 0.0)["pl_ratio"])
        kernel_rate = 2 * alpha**2 * lam0 / X.shape[0]
        assert pl >= kernel_rate * (1 - 1e-9)
        # and it is the U-part exactly: (1/S) sum_k p^T K1_k p / R with p the output residual
        r = flow.forward(X) - Y
        p = alpha * r / X.shape[0]
        expected = sum(float((p.T @ K[:, :] @ p).trace()) for K in Ks) / len(Ks) / float(flow.risk(X, Y))
        assert pl == pytest.approx(expected, rel=1e-10)


def test_small_step_obeys_the_pl_bound():
    """For a small tau, R(t) <= R(0) exp(-m t) with m the minimum recorded P-L ratio."""
    X, Y = _problem(N=30, d=2, dout=1, seed=6)
    flow = _flow(4, 64, X, Y, seed=0, alpha=2.0)
    tau = 0.01
    recs = [flow.step(X, Y, tau) for _ in range(300)]
    R = np.array([float(r["risk"]) for r in recs])
    pl = np.array([float(r["pl_ratio"]) for r in recs])
    t = tau * np.arange(R.size)
    report = convergence_report(R, t, pl, lambda_0=0.0, n_samples=30, output_scale=2.0)
    m = report["pl_constant"]
    assert m > 0 and R[-1] < 0.5 * R[0]
    assert np.all(R <= R[0] * np.exp(-m * t) * (1 + 1e-9))
    assert report["pl_bound_holds"]
    # the bound is not vacuous: with 3 m it fails
    assert not np.all(R <= R[0] * np.exp(-3 * m * t))


def test_frozen_features_move_only_u():
    X, Y = _problem()
    flow = _flow(2, 32, X, Y, train_features=False)
    W0, b0 = flow.W.clone(), flow.b.clone()
    _train(flow, X, Y, 0.1, 5)
    assert torch.equal(flow.W, W0) and torch.equal(flow.b, b0)
    assert torch.any(flow.U != 0)


def test_displacement_bounds_exact_cot_distance():
    from skflow.diagnostics import conditional_wasserstein

    X, Y = _problem()
    flow = _flow(3, 20, X, Y, u_scale=0.0)
    _train(flow, X, Y, 0.2, 30)
    exact = conditional_wasserstein(flow.particles(), flow.initial_particles())
    assert 0 < exact <= float(flow.displacement()) * (1 + 1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_matches_cpu():
    X, Y = _problem()
    cpu = _flow(3, 32, X, Y, u_scale=0.5)
    gpu = cpu.to("cuda", torch.float64)
    r_cpu = cpu.step(X, Y, 0.1)["risk"]
    r_gpu = gpu.step(X.cuda(), Y.cuda(), 0.1)["risk"]
    assert float(r_cpu) == pytest.approx(float(r_gpu), rel=1e-10)
    torch.testing.assert_close(cpu.U, gpu.U.cpu())

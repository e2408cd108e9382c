"""Engine tests for skflow.flows.rkhs (RKHS-NODE, thesis II.4)."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from skflow.diagnostics import (
    data_separation,
    exact_kernel_lambda_min,
    feature_kappa,
    gram_lambda_min,
    kernel_matrix,
    pl_bound,
)
from skflow.flows.rkhs import RKHSFlow, init_random_features, random_features


def random_feature_kernel_lambda_min(Z, W, b):
    return gram_lambda_min(random_features(Z, W, b))


def _problem(N=40, d=3, K=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, K, (N,), generator=g)
    Y = torch.nn.functional.one_hot(labels, K).double()
    return X, Y, g


def _flow(S, M, X, Y, g, loss="cross_entropy", alpha=2.0, momentum=0.0, theta_scale=0.0, length_scale=1.5):
    d, K = X.shape[1], Y.shape[1]
    W, b = init_random_features(M, d + K, "gaussian", length_scale, generator=g)
    theta = theta_scale * torch.randn(S, d + K, M, generator=g, dtype=torch.float64)
    return RKHSFlow(theta, W, b, d_in=d, output_scale=alpha, loss=loss, momentum=momentum)


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_adjoint_matches_autograd(loss):
    X, Y, g = _problem()
    flow = _flow(4, 32, X, Y, g, loss=loss, theta_scale=0.7)
    R, grad = flow.gradients(X, Y)
    R_ag, grad_ag = flow.autograd_gradients(X, Y)
    assert float(R) == pytest.approx(float(R_ag), rel=1e-12)
    torch.testing.assert_close(grad, grad_ag, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_step_direction_matches_central_differences(loss):
    """The step is theta <- theta - tau S dR/dtheta; dR/dtheta checked against central differences of R."""
    X, Y, g = _problem(seed=1)
    flow = _flow(3, 24, X, Y, g, loss=loss, theta_scale=0.5)
    theta0 = flow.theta.clone()
    S = flow.n_layers
    tau = 1e-3
    out = flow.step(X, Y, tau)
    direction = (theta0 - flow.theta) / (tau * S)  # = dR/dtheta as applied by the step
    flow.theta.copy_(theta0)
    eps = 1e-6
    rng = torch.Generator().manual_seed(5)
    for _ in range(3):
        V = torch.randn(theta0.shape, generator=rng, dtype=torch.float64)
        fd = (flow.risk(X, Y, theta0 + eps * V) - flow.risk(X, Y, theta0 - eps * V)) / (2 * eps)
        assert float((direction * V).sum()) == pytest.approx(float(fd), rel=1e-6, abs=1e-10)
    # single coordinates too (a coordinate of an input row and of an output row of theta)
    for idx in [(0, 0, 0), (S - 1, X.shape[1] + 1, 5)]:
        E = torch.zeros_like(theta0)
        E[idx] = 1.0
        fd = (flow.risk(X, Y, theta0 + eps * E) - flow.risk(X, Y, theta0 - eps * E)) / (2 * eps)
        assert float(direction[idx]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9)
    # the recorded risk is the risk before the update, the P-L ratio is S |dR/dtheta|^2 / R
    assert float(out["risk"]) == pytest.approx(float(flow.risk(X, Y, theta0)), rel=1e-12)
    assert float(out["pl_ratio"]) == pytest.approx(float(S * (direction**2).sum() / out["risk"]), rel=1e-9)
    assert float(out["theta_norm"]) == pytest.approx(math.sqrt(float((theta0**2).sum()) / S), rel=1e-12)


def test_forward_is_euler_resnet_and_identity_at_init():
    X, Y, g = _problem(N=10, d=2, K=2)
    flow = _flow(3, 16, X, Y, g, theta_scale=0.3)
    z = torch.cat([X, torch.zeros(10, 2, dtype=torch.float64)], 1)
    for k in range(3):
        z = z + (1.0 / 3) * random_features(z, flow.W, flow.b) @ flow.theta[k].T
    torch.testing.assert_close(flow.forward(X), flow.output_scale * z[:, 2:])
    flow.theta.zero_()
    assert torch.all(flow.forward(X) == 0)
    assert float(flow.risk(X, Y)) == pytest.approx(math.log(2), rel=1e-12)  # uniform softmax


def test_risk_against_flow_time_does_not_depend_on_depth():
    """S = 4 and S = 16, same time step and number of steps: the training curves nearly coincide."""
    X, Y, _ = _problem(N=30, d=2, K=2, seed=3)
    curves = {}
    for S in (4, 16):
        g = torch.Generator().manual_seed(11)  # the same random features for both depths
        flow = _flow(S, 64, X, Y, g, alpha=5.0)
        curves[S] = np.array([float(flow.step(X, Y, 0.3)["risk"]) for _ in range(100)])
    assert curves[4][-1] < 0.8 * curves[4][0]  # training actually moved
    rel = np.abs(curves[4] - curves[16]) / curves[16]
    assert rel.max() < 0.05
    # a step without the factor S (plain dR/dtheta) is not invariant: at S = 16 it runs 4x slower than S = 4
    g = torch.Generator().manual_seed(11)
    flow = _flow(16, 64, X, Y, g, alpha=5.0)
    wrong = np.array([float(flow.step(X, Y, 0.3 * 4 / 16)["risk"]) for _ in range(100)])
    assert (np.abs(wrong - curves[4]) / curves[4]).max() > 0.05


def test_momentum_keeps_time_units():
    """With v <- m v + (1-m) grad, small steps follow the same flow for every momentum."""
    X, Y, _ = _problem(N=20, d=2, K=2, seed=4)
    finals = []
    for m, tau, n in ((0.0, 0.05, 200), (0.9, 0.05, 200)):
        g = torch.Generator().manual_seed(2)
        flow = _flow(2, 32, X, Y, g, momentum=m)
        for _ in range(n):
            flow.step(X, Y, tau)
        finals.append(float(flow.risk(X, Y)))
    assert finals[1] == pytest.approx(finals[0], rel=0.05)


@pytest.mark.parametrize("kernel,nu", [("gaussian", 1.5), ("matern", 2.5)])
def test_random_feature_kernel_converges_at_rate_m_half(kernel, nu):
    g0 = torch.Generator().manual_seed(0)
    X = torch.randn(25, 3, generator=g0, dtype=torch.float64)
    K = torch.as_tensor(kernel_matrix(X, kernel, 1.3, nu))
    widths = [64, 256, 1024, 4096]
    errors = []
    for M in widths:
        err = []
        for seed in range(6):
            W, b = init_random_features(M, 3, kernel, 1.3, nu, generator=torch.Generator().manual_seed(seed))
            Phi = random_features(X, W, b)
            err.append(float(((Phi @ Phi.T - K) ** 2).mean().sqrt()))
        errors.append(np.mean(err))
    slope = np.polyfit(np.log(widths), np.log(errors), 1)[0]
    assert all(np.diff(errors) < 0)
    assert -0.7 < slope < -0.3, slope


def test_lambda_min_diagnostics():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30, 2, generator=g, dtype=torch.float64) * 2.0
    exact = exact_kernel_lambda_min(X, "gaussian", 1.0)
    assert exact > 0
    W, b = init_random_features(20000, 2, "gaussian", 1.0, generator=g)
    rf = random_feature_kernel_lambda_min(X, W, b)
    assert rf == pytest.approx(exact, abs=0.05)
    # fewer features than points: the matrix has rank <= M, reported as exactly 0 (no round-off)
    assert random_feature_kernel_lambda_min(X, W[:10], b[:10]) == 0.0


def test_data_separation():
    rng = np.random.RandomState(0)
    X = rng.randn(300, 4)
    assert data_separation(X, chunk=64) == pytest.approx(pdist(X).min(), rel=1e-12)
    X[17] = X[200]
    assert data_separation(X) == 0.0
    assert data_separation(X[:1]) == math.inf
    # close points are resolved to full precision (no cancellation in |x|^2 + |y|^2 - 2 x.y)
    Y = np.array([[1e4, 1e4], [1e4 + 1e-6, 1e4], [0.0, 0.0]])
    assert data_separation(Y) == pytest.approx(1e-6, rel=1e-6)


def test_pl_bound_and_kappa():
    g = torch.Generator().manual_seed(0)
    W, _ = init_random_features(500, 3, "gaussian", 2.0, generator=g)
    kappa = feature_kappa(W)
    assert kappa >= math.sqrt(2)
    X = torch.randn(20, 3, generator=g, dtype=torch.float64)
    m0 = pl_bound(X, 0.0, kappa, 20, "gaussian", 2.0)
    assert m0 == pytest.approx(exact_kernel_lambda_min(X, "gaussian", 2.0) / 20)
    # a larger radius contracts the separation and the bound decreases
    assert pl_bound(X, 1.0, kappa, 20, "gaussian", 2.0) < m0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flow_moves_to_cuda_and_back():
    X, Y, g = _problem()
    flow = _flow(2, 16, X, Y, g, theta_scale=0.1)
    out_cpu = flow.forward(X)
    gpu = flow.to("cuda")
    torch.testing.assert_close(gpu.forward(X.cuda()).cpu(), out_cpu)

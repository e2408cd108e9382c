"""RBF networks on the torus (thesis App. III.B, Eq. III.50): features, flow, estimator, data and diagnostics."""

import copy
import warnings

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from sklearn.utils.estimator_checks import parametrize_with_checks

from skflow import VarProSHLRegressor
from skflow.datasets import make_torus_teacher, sample_torus_teacher, torus_teacher_density
from skflow.diagnostics import energy_distance
from skflow.diagnostics.torus import TorusEnergyDistance, torus_distance, torus_energy_distance
from skflow.exceptions import IncompatibleWarmStartError
from skflow.flows.varpro import (
    RBFKernel,
    Torus,
    TorusVarProFlow,
    VarProFlow,
    feature_gradient,
    features,
    reduced_risk,
    ridge_projection,
)

L = 4.0


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter with tol=0 is expected here
        return model.fit(X, y)


def _laplace_np(Z):
    """The thesis's kernel ``8 exp(-|z| / 2)`` on the last axis, in numpy."""
    return 8.0 * np.exp(-0.5 * np.linalg.norm(Z, axis=-1))


def _wrap_np(Z):
    return np.mod(Z + L / 2, L) - L / 2


def _torus_teacher_problem(N=256, M_teacher=200, seed=0):
    X, y, T = make_torus_teacher(N, M_teacher, gamma=100, random_state=seed)
    return torch.as_tensor(X), torch.as_tensor(y)[:, None], T


# ---------------------------------------------------------------------------------------------------- the torus


def test_wrap_matches_closed_form_and_stays_in_fundamental_domain():
    Z = torch.tensor([-6.1, -4.0, -2.0, -1.999, 0.0, 1.999, 2.0, 3.0, 5.0, 1e3 + 0.5], dtype=torch.float64)
    W = Torus(L).wrap(Z)
    np.testing.assert_allclose(W.numpy(), _wrap_np(Z.numpy()), atol=1e-12)
    assert float(W[2]) == -2.0 and float(W[6]) == -2.0  # the half-open domain [-L/2, L/2)
    R = torch.randn(1000, 3, dtype=torch.float64) * 20
    W = Torus(L).wrap(R)
    assert bool((W >= -L / 2).all() and (W < L / 2).all())
    k = (R - W) / L
    np.testing.assert_allclose(k.numpy(), np.round(k.numpy()), atol=1e-9)  # same class modulo L Z^d


def test_model_is_periodic_in_the_features():
    X = torch.randn(64, 2, dtype=torch.float64) * 2
    om = Torus(L).wrap(torch.randn(5, 2, dtype=torch.float64))
    for kernel in (RBFKernel(), RBFKernel("gaussian", 0.7)):
        Phi = features(om, X, kernel, Torus(L))[0]
        for j in range(2):
            e = torch.zeros(2, dtype=torch.float64)
            e[j] = L
            for shift in (e, -3 * e):
                np.testing.assert_allclose(features(om + shift, X, kernel, Torus(L))[0].numpy(), Phi.numpy(),
                                           rtol=1e-12, atol=1e-12)
    # the thesis's formula: k([omega - x]) with k = 8 exp(-|z| / 2)
    ref = _laplace_np(_wrap_np(om.numpy()[None, :, :] - X.numpy()[:, None, :]))
    np.testing.assert_allclose(features(om, X, RBFKernel(), "torus")[0].numpy(), ref, rtol=1e-12)
    # the flow's output: F with omega and omega + L e_j agree
    u = torch.randn(5, 1, dtype=torch.float64)
    f1 = TorusVarProFlow(om.clone(), u.clone(), lam=1e-2)
    f2 = TorusVarProFlow(om + torch.tensor([L, -2 * L], dtype=torch.float64), u.clone(), lam=1e-2)
    np.testing.assert_allclose(f1.forward(X).numpy(), f2.forward(X).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f2.omega.numpy(), om.numpy(), atol=1e-12)  # wrapped at construction


def test_a_feature_crossing_the_boundary_is_wrapped():
    # one data point just across the boundary x_1 = L/2 from the feature: the shortest way is through it
    X = torch.tensor([[-1.9, 0.3]], dtype=torch.float64)
    Y = torch.tensor([[8.0]], dtype=torch.float64)
    om = torch.tensor([[1.95, 0.3]], dtype=torch.float64)
    flow = TorusVarProFlow(om.clone(), torch.ones(1, 1, dtype=torch.float64), lam=1e-3, store_every=1,
                           regularization="unbiased")
    flow.start(X, Y)
    Phi = features(flow.omega, X, flow.activation, flow.domain)[0]
    u = ridge_projection(Phi, Y, 1e-3, "unbiased")
    G, _ = feature_gradient(flow.omega, u, X, Y, 1e-3, "unbiased", flow.activation, flow.domain)
    assert float(G[0, 0]) < 0  # the feature moves towards +x_1, i.e. across L/2
    lr = 0.2 / abs(float(G[0, 0]))
    flow.step(X, Y, lr)
    unwrapped = om - lr * 1 * G  # Eq. III.42: omega <- omega - M tau grad L, M = 1
    assert float(unwrapped[0, 0]) > L / 2
    np.testing.assert_allclose(flow.omega.numpy(), (unwrapped - torch.tensor([L, 0.0])).numpy(), atol=1e-12)
    assert bool((flow.omega >= -L / 2).all() and (flow.omega < L / 2).all())
    np.testing.assert_allclose(flow.snapshots[-1].numpy(), flow.omega.numpy())  # the snapshot is wrapped too
    # closer to the data point than before (through the boundary)
    d0 = torus_distance(om, X)[0, 0]
    d1 = torus_distance(flow.omega, X)[0, 0]
    assert d1 < d0


def test_step_is_the_varpro_step_with_time_step_tau():
    X, Y, _ = _torus_teacher_problem(128, 100)
    om = Torus(L).wrap(torch.rand(16, 2, dtype=torch.float64) * L)
    flow = TorusVarProFlow(om.clone(), torch.ones(16, 1, dtype=torch.float64), lam=1e-2, regularization="unbiased")
    _, u, _ = reduced_risk(om, X, Y, 1e-2, "unbiased", flow.activation, flow.domain)
    G, _ = feature_gradient(om, u, X, Y, 1e-2, "unbiased", flow.activation, flow.domain)
    tau = 2.0 ** -10
    out = flow.step(X, Y, tau)
    np.testing.assert_allclose(flow.omega.numpy(), Torus(L).wrap(om - 16 * tau * G).numpy(), atol=1e-12)
    np.testing.assert_allclose(flow.u.numpy(), u.numpy(), rtol=1e-10)
    L0, _, _ = reduced_risk(om, X, Y, 1e-2, "unbiased", flow.activation, flow.domain)
    assert float(out["reduced_risk"]) == pytest.approx(float(L0), rel=1e-10)


# ------------------------------------------------------------------------------------------ gradient, projection


def _away_from_kinks(om, X, domain, margin=2e-2):
    Z = om[None, :, :] - X[:, None, :]
    if isinstance(domain, Torus):
        Z = Torus(L).wrap(Z)
        near_cut = ((Z.abs() - L / 2).abs() < margin).any()
    else:
        near_cut = False
    return bool(Z.norm(dim=-1).min() > margin) and not near_cut


@pytest.mark.parametrize("kernel", [RBFKernel(), RBFKernel("gaussian", 0.8)], ids=["laplace", "gaussian"])
@pytest.mark.parametrize("domain", [Torus(L), "euclidean"], ids=["torus", "euclidean"])
@pytest.mark.parametrize("regularization", ["biased", "unbiased"])
def test_feature_gradient_matches_finite_differences(kernel, domain, regularization):
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(60, 2, generator=gen, dtype=torch.float64) * 1.5
    Y = torch.randn(60, 1, generator=gen, dtype=torch.float64) + 3.0
    while True:  # float64, away from the kernel's kink and from the cut locus of the projection
        om = (torch.rand(7, 2, generator=gen, dtype=torch.float64) - 0.5) * L
        if _away_from_kinks(om, X, domain):
            break
    lam = 1e-2
    _, u, _ = reduced_risk(om, X, Y, lam, regularization, kernel, domain)
    G, _ = feature_gradient(om, u, X, Y, lam, regularization, kernel, domain)
    for _ in range(3):
        V = torch.randn(om.shape, generator=gen, dtype=torch.float64)
        eps = 1e-6
        Lp, _, _ = reduced_risk(om + eps * V, X, Y, lam, regularization, kernel, domain)
        Lm, _, _ = reduced_risk(om - eps * V, X, Y, lam, regularization, kernel, domain)
        fd = float(Lp - Lm) / (2 * eps)
        assert float((G * V).sum()) == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_laplace_kink_uses_the_zero_subgradient():
    X = torch.tensor([[0.5, -0.25], [1.0, 1.0]], dtype=torch.float64)
    om = X[:1].clone()  # the feature sits exactly on a data point
    Phi, S, _ = features(om, X, RBFKernel(), Torus(L))
    assert float(Phi[0, 0]) == 8.0 and float(S[0, 0]) == 0.0 and torch.isfinite(S).all()
    u = torch.ones(1, 1, dtype=torch.float64)
    Y = torch.zeros(2, 1, dtype=torch.float64)
    G, _ = feature_gradient(om, u, X, Y, 1e-2, "biased", RBFKernel(), Torus(L))
    # only the other data point pulls: the closed form of its term
    z = _wrap_np(om.numpy()[0] - X.numpy()[1])
    r = np.linalg.norm(z)
    res = Phi[1, 0].item() / 1  # r_n = F(x_n) - y_n with u = 1, M = 1
    expected = res * (-8.0 * np.exp(-r / 2) / (2 * r)) * z / (2 * 1 * 1e-2)
    np.testing.assert_allclose(G.numpy()[0], expected, rtol=1e-12)


@pytest.mark.parametrize("regularization", ["biased", "unbiased"])
def test_projection_matches_closed_form(regularization):
    X, Y, _ = _torus_teacher_problem(200, 100)
    om = Torus(L).wrap(torch.randn(12, 2, dtype=torch.float64) * 2)
    lam = 1e-3
    Phi = features(om, X, RBFKernel(), Torus(L))[0].numpy()
    np.testing.assert_allclose(Phi, _laplace_np(_wrap_np(om.numpy()[None] - X.numpy()[:, None])), rtol=1e-12)
    N, M = Phi.shape
    c = 1.0 if regularization == "unbiased" else 0.0
    u = np.linalg.solve(Phi.T @ Phi / (N * M) + lam * np.eye(M), Phi.T @ Y.numpy() / N + lam * c)
    np.testing.assert_allclose(ridge_projection(torch.as_tensor(Phi), Y, lam, regularization).numpy(), u,
                               rtol=1e-8)
    Lr, u_star, _ = reduced_risk(om, X, Y, lam, regularization, RBFKernel(), Torus(L))
    r = Phi @ u / M - Y.numpy()
    expected = (0.5 * (r ** 2).sum() / N + lam * 0.5 * ((u - c) ** 2).sum() / M) / lam
    assert float(Lr) == pytest.approx(expected, rel=1e-8)


# ------------------------------------------------------------------------------------------------ the estimator


@parametrize_with_checks([
    VarProSHLRegressor(16, feature_map="rbf", feature_domain="torus", max_iter=20, device="cpu"),
    VarProSHLRegressor(16, feature_map="rbf", rbf_kernel="gaussian", max_iter=20, device="cpu"),
], expected_failed_checks=lambda est: {
    f"check_sample_weight_equivalence_on_{kind}_data": (
        "early stopping (the default) holds out rows at random, and alpha='auto' leaves one row out: a repeated "
        "row can fall on both sides, a weighted one cannot (with fixed hyperparameters and full batch, integer "
        "weights equal repeated rows: tests/test_sample_weight.py, 'varpro-rbf')") for kind in ("dense", "sparse")})
def test_sklearn_compatible_rbf(estimator, check, monkeypatch):
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")  # the array-API checks skip themselves without it
    # the torus model is periodic in x: its poor_score tag waives the score floor of check_regressors_train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)



def test_parameter_validation():
    X, y, _ = make_torus_teacher(50, 30, random_state=0)
    bad = [
        dict(feature_domain="torus"),  # torus needs RBF features
        dict(feature_map="rbf", feature_domain="sphere"),
        dict(feature_map="rbf", feature_domain="torus", torus_period=0.0),
        dict(feature_map="rbf", feature_domain="torus", torus_period=-4.0),
        dict(feature_map="rbf", rbf_kernel="cauchy"),
        dict(feature_map="rbf", rbf_bandwidth=0.0),
        dict(feature_map="mlp"),
        dict(feature_domain="cylinder"),
    ]
    for params in bad:
        with pytest.raises(ValueError):
            VarProSHLRegressor(width=4, max_iter=2, device="cpu", **params).fit(X, y)
    for args in (("cauchy",), ("laplace", 0.0), ("gaussian", float("nan"))):
        with pytest.raises(ValueError):
            RBFKernel(*args)
    for period in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError):
            Torus(period)
    om, u = torch.zeros(2, 2, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="TorusVarProFlow"):
        VarProFlow(om, u, lam=1e-2, activation=RBFKernel(), domain="torus")
    with pytest.raises(ValueError, match="RBF"):
        TorusVarProFlow(om, u, lam=1e-2, activation="relu")
    with pytest.raises(ValueError, match="RBF"):
        features(om, torch.zeros(3, 2, dtype=torch.float64), "relu", "torus")
    with pytest.raises(ValueError, match="sphere"):
        features(om, torch.zeros(3, 2, dtype=torch.float64), RBFKernel(), "sphere")


@pytest.fixture(scope="module")
def torus_fit():
    X, y, T = make_torus_teacher(512, 512, gamma=100, random_state=0)
    m = VarProSHLRegressor(32, feature_map="rbf", feature_domain="torus", alpha=1e-3, regularization="unbiased",
                           learning_rate=2.0 ** -8, max_iter=150, tol=0, early_stopping=False,
                           store_features_every=50, random_state=0, device="cpu")
    return _fit(m, X, y), X, y, T


def test_fit_on_the_torus_decreases_the_reduced_risk(torus_fit):
    m, X, y, T = torus_fit
    L_curve = m.reduced_risk_curve_
    assert m.n_iter_ == 150 and m.stop_reason_ == "max_iter"
    assert np.all(np.diff(L_curve) <= 1e-12 * L_curve[0])  # full-batch VarPro: monotone (Eq. III.42)
    assert L_curve[-1] < 0.5 * L_curve[0]
    assert m.reduced_risk(X, y) <= L_curve[-1]
    # features kept on the fundamental domain, initialised uniformly on it
    assert m.features_.shape == (32, 2)
    for h in m.feature_history_:
        assert np.all(h >= -L / 2) and np.all(h < L / 2)
    # the particles move towards the teacher
    dist = TorusEnergyDistance(T)
    assert dist(m.features_) < dist(m.feature_history_[0])
    # no target scaling on the torus: predict is the model of Eq. III.50 with outer_weights_ = u*(features_)
    assert np.all(m.y_mean_ == 0) and np.all(m.y_scale_ == 1)
    Phi = _laplace_np(_wrap_np(m.features_[None] - X[:, None]))
    np.testing.assert_allclose(m.predict(X), Phi @ m.outer_weights_[:, 0] / 32, rtol=1e-10)
    assert np.isfinite(m.kernel_spectrum_).all() and m.kernel_spectrum_[0] > 0


def test_initialisation_is_uniform_on_the_torus():
    X, y, _ = make_torus_teacher(40, 20, random_state=0)
    m = _fit(VarProSHLRegressor(2000, feature_map="rbf", feature_domain="torus", torus_period=3.0, alpha=1e-2,
                                max_iter=1, learning_rate=1e-12, early_stopping=False, random_state=0,
                                store_features_every=1, device="cpu"), X, y)
    init = m.feature_history_[0]
    assert np.all(init >= -1.5) and np.all(init < 1.5)
    for j in range(2):
        assert stats.kstest(init[:, j], stats.uniform(-1.5, 3.0).cdf).pvalue > 1e-3


def test_euclidean_rbf_and_warm_start(torus_fit):
    m, X, y, _ = torus_fit
    # Euclidean RBF centres: a plain RBF network, targets standardised for the biased regulariser
    e = _fit(VarProSHLRegressor(16, feature_map="rbf", rbf_kernel="gaussian", rbf_bandwidth=1.0, alpha=1e-2,
                                max_iter=30, tol=0, early_stopping=False, random_state=0, device="cpu"), X, y)
    assert e.features_.shape == (16, 2) and e.reduced_risk_curve_[-1] < e.reduced_risk_curve_[0]
    Phi = 8.0 * np.exp(-0.5 * ((e.features_[None] - X[:, None]) ** 2).sum(-1))
    np.testing.assert_allclose((e.predict(X) - e.y_mean_) / e.y_scale_, Phi @ e.outer_weights_[:, 0] / 16, rtol=1e-10)
    # warm start continues on the torus; the RBF parameters are architecture, the (unused) activation is not
    w = VarProSHLRegressor(8, feature_map="rbf", feature_domain="torus", alpha=1e-2, max_iter=5, tol=0,
                           early_stopping=False, warm_start=True, random_state=0, device="cpu")
    _fit(w, X, y)
    _fit(w.set_params(activation="tanh"), X, y)
    assert w.n_iter_ == 10
    for change in (dict(rbf_bandwidth=1.0), dict(torus_period=5.0), dict(rbf_kernel="gaussian"),
                   dict(feature_domain="euclidean")):
        with pytest.raises(IncompatibleWarmStartError):
            _fit(copy.deepcopy(w).set_params(**change), X, y)


# -------------------------------------------------------------------------------------------- data and distance


def test_torus_teacher_density_and_sampler():
    total, _ = integrate.dblquad(lambda b, a: torus_teacher_density([[a, b]], gamma=10.0)[0], -2, 2, -2, 2)
    assert total == pytest.approx(1.0, rel=1e-6)
    Z = sample_torus_teacher(20000, gamma=100.0, random_state=0)
    assert Z.shape == (20000, 2) and np.all(Z >= -2) and np.all(Z < 2)
    # each coordinate's marginal: the mixture of the per-mode laws, whose CDF is in closed form
    s = np.sqrt(101.0)

    def cdf(t, m):
        # CDF on [-2, 2) of the wrapped law of offsets centred at m: 1/2 + atan(s tan(pi z / 4)) / pi, z = t - m
        F0 = lambda z: 0.5 + np.arctan(s * np.tan(np.pi * z / 4)) / np.pi  # noqa: E731
        return F0(_wrap_np(t - m)) - F0(_wrap_np(-2.0 - m)) + (_wrap_np(t - m) < _wrap_np(-2.0 - m))

    for j, modes in enumerate(((-1.0, 1.0), (0.0, 1.0))):
        res = stats.kstest(Z[:, j], lambda t: 0.5 * cdf(t, modes[0]) + 0.5 * cdf(t, modes[1]))
        assert res.pvalue > 1e-3
    atoms = sample_torus_teacher(10, gamma=np.inf, random_state=0)
    assert set(map(tuple, atoms)) <= {(-1.0, 0.0), (1.0, 1.0)}
    with pytest.raises(ValueError):
        sample_torus_teacher(5, gamma=-1.0)


def test_make_torus_teacher():
    X, y, T = make_torus_teacher(300, 200, gamma=100, random_state=1)
    assert X.shape == (300, 2) and y.shape == (300,) and T.shape == (200, 2)
    assert np.all(T >= -2) and np.all(T < 2)
    np.testing.assert_allclose(y, _laplace_np(_wrap_np(T[None] - X[:, None])).mean(1), rtol=1e-12)
    X2, y2, T2 = make_torus_teacher(300, 200, gamma=100, random_state=1)
    np.testing.assert_array_equal(T, T2), np.testing.assert_array_equal(y, y2)
    _, y3, _ = make_torus_teacher(300, 200, gamma=100, noise=0.1, random_state=1)
    assert 0.05 < np.std(y3 - y) < 0.2
    _, yg, _ = make_torus_teacher(300, 200, kernel="gaussian", bandwidth=0.5, random_state=1)
    Zg = _wrap_np(T[None] - X[:, None])
    np.testing.assert_allclose(yg, (8 * np.exp(-(Zg ** 2).sum(-1) / 0.5)).mean(1), rtol=1e-12)
    for bad in (dict(kernel="cauchy"), dict(period=0.0), dict(noise=-1.0), dict(n_samples=0)):
        with pytest.raises(ValueError):
            make_torus_teacher(**{**dict(n_samples=10, n_teacher=10), **bad})


def test_torus_energy_distance():
    rng = np.random.RandomState(0)
    a, b = rng.rand(60, 2) * 4 - 2, rng.rand(50, 2) * 4 - 2
    # invariant under shifts by the period, symmetric, zero on identical clouds
    assert torus_energy_distance(a, a + [4.0, -8.0]) == pytest.approx(0.0, abs=1e-5)  # sqrt of round-off
    d = torus_energy_distance(a, b)
    assert d == pytest.approx(torus_energy_distance(b, a), rel=1e-10)
    assert d == pytest.approx(TorusEnergyDistance(b)(a), rel=1e-12)
    # clouds in a small patch: the flat-torus distance is the Euclidean one
    small_a, small_b = a * 0.2, b * 0.2 + 0.3
    assert torus_energy_distance(small_a, small_b, metric="geodesic") == pytest.approx(
        energy_distance(small_a, small_b), rel=1e-10)
    # two Diracs at torus distance 1 through the boundary: MMD^2 = 2 d, with d = 1 (geodesic) or the chord
    # (L / 2 pi) 2 sin(pi / L) of the circle of length L (chordal, the default)
    assert torus_energy_distance([[1.5, 0.0]], [[-1.5, 0.0]], metric="geodesic") == pytest.approx(np.sqrt(2.0))
    chord = (L / np.pi) * np.sin(np.pi / L)
    assert torus_energy_distance([[1.5, 0.0]], [[-1.5, 0.0]]) == pytest.approx(np.sqrt(2 * chord), rel=1e-12)
    assert TorusEnergyDistance(b, metric="geodesic")(a) == pytest.approx(torus_energy_distance(a, b, metric="geodesic"))
    D = torus_distance(a, b).numpy()
    np.testing.assert_allclose(D, np.linalg.norm(_wrap_np(a[:, None] - b[None]), axis=-1), rtol=1e-12)
    with pytest.raises(ValueError):
        torus_energy_distance(a, b, metric="l3")
    with pytest.raises(ValueError):
        torus_energy_distance(a, b, period=0.0)

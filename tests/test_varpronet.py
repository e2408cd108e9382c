"""Tests of skflow.VarProNetRegressor / VarProNetClassifier and their engine (thesis §III.6.2, Eq. III.45-III.46).

The contract every estimator keeps (scikit-learn's checks, clone, seeds, pickling, warm start, bad input) is
tested for both estimators by tests/test_common.py (specs in tests/conftest.py); this file holds what is
specific to them: the ridge head, the backbone step, the module conventions.
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from torch import nn

from skflow import VarProNetClassifier, VarProNetRegressor
from skflow.exceptions import IncompatibleWarmStartError
from skflow.flows.varpronet import Conv1dFeatures, MLPFeatures, VarProNetFlow, net_reduced_risk

SMALL = dict(module_kwargs={"hidden_layer_sizes": (16,)}, device="cpu")


def _flow(N=40, d=3, hidden=(6, 5), n_out=2, lam=1e-2, stochastic=False, momentum=0.9, seed=0):
    """A float64 engine on random data: (flow, X, Y)."""
    torch.manual_seed(seed)
    module = MLPFeatures(d, hidden).double()
    X = torch.randn(N, d, dtype=torch.float64)
    Y = torch.randn(N, n_out, dtype=torch.float64)
    u = torch.zeros(hidden[-1], n_out, dtype=torch.float64)
    flow = VarProNetFlow(module, u, lam=lam, momentum=momentum, stochastic=stochastic, n_inputs=d)
    return flow, X, Y


def _ridge_numpy(Phi, Y, lam):
    """Closed form of Eq. III.45's head: ``(Phi^T Phi / (N M) + lambda I) u = Phi^T Y / N`` in float64."""
    N, M = Phi.shape
    return np.linalg.solve(Phi.T @ Phi / (N * M) + lam * np.eye(M), Phi.T @ Y / N)


# ---------------------------------------------------------------------------------------------- the engine


@pytest.mark.parametrize("N", [40, 4])  # primal (N >= M) and dual (N < M) solves
def test_full_batch_head_is_the_closed_form_ridge_solution(N):
    flow, X, Y = _flow(N=N)
    Phi = flow.features(X).numpy()
    flow.step(X, Y, 1e-3)
    np.testing.assert_allclose(flow.u.numpy(), _ridge_numpy(Phi, Y.numpy(), flow.lam), rtol=1e-9, atol=1e-12)
    flow.finish(X, Y, 1)  # the final re-projection: the exact head at the final network
    np.testing.assert_allclose(flow.u.numpy(), _ridge_numpy(flow.features(X).numpy(), Y.numpy(), flow.lam),
                               rtol=1e-9, atol=1e-12)


def test_stochastic_head_averages_the_minibatch_projections():
    """Eq. III.46: the first minibatch sets u to its projection, later ones average in with momentum m."""
    flow, X, Y = _flow(stochastic=True, momentum=0.7)
    A, B = slice(0, 20), slice(20, 40)
    flow.step(X[A], Y[A], 1e-3)
    u1 = flow.u.clone()
    Phi_b = flow.features(X[B]).numpy()
    flow.step(X[B], Y[B], 1e-3)
    expected = 0.7 * u1.numpy() + 0.3 * _ridge_numpy(Phi_b, Y[B].numpy(), flow.lam)
    np.testing.assert_allclose(flow.u.numpy(), expected, rtol=1e-9, atol=1e-12)
    flow.finish(X, Y, 2)  # stochastic: u is kept (the average), not re-projected
    np.testing.assert_allclose(flow.u.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_backbone_step_is_the_gradient_of_the_reduced_risk():
    """Envelope theorem: the step at fixed u = u*(theta) moves theta by -M tau grad L, with L(theta) =
    min_u R(theta, u) / lambda, checked against central finite differences of L and against autograd through
    the solve; the recorded reduced risk and P-L ratio are L and M |grad L|^2 / L."""
    flow, X, Y = _flow()
    params = list(flow.module.parameters())
    before = [p.detach().clone() for p in params]
    L0, _ = net_reduced_risk(flow.module, X, Y, flow.lam)
    through_solve = torch.autograd.grad(L0, params)  # differentiates the solve too: the same gradient
    tau, M = 1e-4, flow.width
    rec = flow.step(X, Y, tau)
    grad = [(b - p.detach()) / (M * tau) for b, p in zip(before, params)]  # theta moved by -M tau grad L
    for g, h in zip(grad, through_solve):
        np.testing.assert_allclose(g.numpy(), h.numpy(), rtol=1e-7, atol=1e-10)
    with torch.no_grad():
        for p, b in zip(params, before):
            p.copy_(b)
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):  # directional derivatives along random directions
            V = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
            eps = 1e-5
            values = []
            for sign in (1.0, -1.0):
                for p, b, v in zip(params, before, V):
                    p.copy_(b + sign * eps * v)
                values.append(float(net_reduced_risk(flow.module, X, Y, flow.lam)[0]))
            fd = (values[0] - values[1]) / (2 * eps)
            exact = float(sum((g * v).sum() for g, v in zip(grad, V)))
            assert fd == pytest.approx(exact, rel=1e-6, abs=1e-9)
    assert float(rec["reduced_risk"]) == pytest.approx(L0.item(), rel=1e-12)
    speed2 = M * float(sum((g * g).sum() for g in grad))
    assert float(rec["pl_ratio"]) == pytest.approx(speed2 / L0.item(), rel=1e-8)


def test_backbone_momentum_zero_is_eq_III_46_and_positive_averages_the_velocity():
    flow, X, Y = _flow()
    twin = flow.to("cpu")
    twin.backbone_momentum = 0.5
    p0 = [p.detach().clone() for p in flow.module.parameters()]
    flow.step(X, Y, 1e-3)
    twin.step(X, Y, 1e-3)
    # the first step of the averaged velocity is (1 - beta) times the plain one
    for a, b, c in zip(p0, flow.module.parameters(), twin.module.parameters()):
        np.testing.assert_allclose((a - c.detach()).numpy(), 0.5 * (a - b.detach()).numpy(), rtol=1e-9, atol=1e-14)


def test_engine_moves_between_dtypes_without_sharing_the_module():
    flow, X, Y = _flow()
    other = flow.to("cpu", torch.float32)
    assert other.module is not flow.module and other.u.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in other.module.parameters())
    assert all(p.dtype == torch.float64 for p in flow.module.parameters())
    assert flow.bytes_per_row(training=True) > flow.bytes_per_row(training=False) > 0


# ---------------------------------------------------------------------------------------------- estimators


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y)


def test_regressor_predict_is_the_head_on_the_trained_module(regression_data):
    X, y, Xt, yt = regression_data
    m = _fit(VarProNetRegressor(max_iter=30, random_state=0, **SMALL), X, y)
    assert m.outer_weights_.shape == (16, 1) and m.width_ == 16 and m.n_features_in_ == X.shape[1]
    with torch.no_grad():
        Phi = m.module_(torch.as_tensor(Xt)).numpy()
    np.testing.assert_allclose((m.predict(Xt) - m.y_mean_) / m.y_scale_, (Phi @ m.outer_weights_ / 16)[:, 0],
                               rtol=1e-10, atol=1e-12)
    assert m.score(Xt, yt) > 0.5  # a trained model, not the constant (seeds 0-7 score 0.57-0.74 in 30 epochs)
    assert m.loss_curve_.shape == m.reduced_risk_curve_.shape == m.pl_ratio_curve_.shape == (m.n_iter_,)
    assert m.kernel_spectrum_.shape == (10,) and np.all(np.diff(m.kernel_spectrum_) <= 0)


def test_full_batch_outer_weights_are_the_exact_projection_at_the_end(regression_data):
    X, y, _, _ = regression_data
    m = _fit(VarProNetRegressor(batch_size=None, early_stopping=False, tol=0, max_iter=10, learning_rate=1e-4,
                                alpha=1e-2, backbone_momentum=0.0, random_state=0, **SMALL), X, y)
    with torch.no_grad():
        Phi = m.module_(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(m.outer_weights_, _ridge_numpy(Phi, ((y - m.y_mean_) / m.y_scale_)[:, None], 1e-2),
                               rtol=1e-8, atol=1e-10)
    # full batch, plain steps: the explicit scheme of the gradient flow of the reduced risk decreases it
    assert np.all(np.diff(m.reduced_risk_curve_) < 0)


def test_classifier_outputs(classification_data):
    X, y, Xt, yt = classification_data
    m = _fit(VarProNetClassifier(max_iter=30, random_state=0, **SMALL), X, y)
    np.testing.assert_array_equal(m.classes_, [0, 1, 2])
    assert m.outer_weights_.shape == (16, 3) and m.score(Xt, yt) > 0.8
    F, P = m.decision_function(Xt), m.predict_proba(Xt)
    np.testing.assert_array_equal(m.predict(Xt), m.classes_[F.argmax(1)])
    np.testing.assert_allclose(P.sum(1), 1.0)
    np.testing.assert_array_equal(P.argmax(1), F.argmax(1))
    np.testing.assert_allclose(np.log(P), m.predict_log_proba(Xt), rtol=1e-10, atol=1e-12)
    Z = F / m.temperature_
    np.testing.assert_allclose(P, np.exp(Z) / np.exp(Z).sum(1, keepdims=True), rtol=1e-10)
    assert 1e-3 <= m.temperature_ <= 1e3
    # string labels, two classes: a 1-D decision function, positive for classes_[1]
    labels = np.where(y == 0, "a", "b")
    b = _fit(VarProNetClassifier(max_iter=10, random_state=0, **SMALL), X, labels)
    d = b.decision_function(Xt)
    assert d.shape == (len(Xt),)
    np.testing.assert_array_equal(b.predict(Xt), np.where(d > 0, "b", "a"))


def test_auto_learning_rate_searches_a_stable_step(classification_data):
    X, y, _, _ = classification_data
    m = _fit(VarProNetClassifier(learning_rate="auto", max_iter=3, random_state=0, **SMALL), X, y)
    assert 0 < m.learning_rate_ < np.inf and m.flow_.n_steps == 3 * 2  # the probes ran on copies


def test_random_state_gives_the_same_module_and_clone_drops_it(classification_data):
    # outputs, outer_weights_ and the clone's parameters: tests/test_common.py; here the trained module itself
    X, y, _, _ = classification_data
    a = _fit(VarProNetClassifier(max_iter=5, random_state=3, **SMALL), X, y)
    b = _fit(clone(a), X, y)
    for p, q in zip(a.module_.parameters(), b.module_.parameters()):
        assert torch.equal(p, q)
    assert not hasattr(clone(a), "module_")
    # the global torch generator is neither used nor moved by a fit
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _fit(VarProNetClassifier(max_iter=2, random_state=0, **SMALL), X, y)
    assert torch.equal(torch.rand(3), expected)


def test_pickle_round_trip_keeps_module_and_loads_on_the_cpu(classification_data, monkeypatch):
    X, y, Xt, _ = classification_data
    m = _fit(VarProNetClassifier(max_iter=5, random_state=0, **SMALL), X, y)
    expected, proba = m.decision_function(Xt), m.predict_proba(Xt)
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.decision_function(Xt), expected)
    np.testing.assert_array_equal(m2.predict_proba(Xt), proba)
    assert m2.module_ is m2.flow_.module and set(vars(m2)) == set(vars(m))
    m.device_ = torch.device("cuda", 0)  # as if trained on a GPU: __getstate__ moves the module to the CPU
    blob = pickle.dumps(m)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    m3 = pickle.loads(blob)
    assert m3.device_ == torch.device("cpu") and m3.module_ is m3.flow_.module
    assert all(p.device.type == "cpu" for p in m3.module_.parameters())
    np.testing.assert_array_equal(m3.decision_function(Xt), expected)


def test_grid_search_over_module_kwargs_and_alpha(regression_data):
    X, y, Xt, yt = regression_data
    base = VarProNetRegressor(max_iter=15, random_state=0, device="cpu")
    grid = GridSearchCV(base, {"module_kwargs": [{"hidden_layer_sizes": (8,)}, {"hidden_layer_sizes": (16,)}],
                               "alpha": [1e-3, 1e-2]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid.fit(X, y)
    assert grid.best_estimator_.width_ == grid.best_params_["module_kwargs"]["hidden_layer_sizes"][-1]
    assert grid.best_estimator_.alpha_ == grid.best_params_["alpha"]
    assert grid.score(Xt, yt) > 0.3
    assert base.module_kwargs is None and not hasattr(base, "module_")


def test_warm_start_continues_and_rejects_a_new_architecture(regression_data):
    X, y, Xt, _ = regression_data
    kw = dict(batch_size=None, early_stopping=False, tol=0, learning_rate=1e-4, random_state=0, **SMALL)
    full = _fit(VarProNetRegressor(max_iter=10, **kw), X, y)
    warm = _fit(VarProNetRegressor(max_iter=5, warm_start=True, **kw), X, y)
    _fit(warm, X, y)
    assert warm.n_iter_ == 10
    np.testing.assert_allclose(warm.loss_curve_, full.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(warm.predict(Xt), full.predict(Xt), rtol=1e-10)
    before = warm.predict(Xt)
    warm.set_params(module_kwargs={"hidden_layer_sizes": (8,)})
    with pytest.raises(IncompatibleWarmStartError, match="module_kwargs"):
        warm.fit(X, y)
    np.testing.assert_array_equal(warm.predict(Xt), before)


def test_module_conventions_and_errors(regression_data):
    X, y, _, _ = regression_data

    def factory(width=4):  # a plain callable without n_features_in: the module infers its input width
        return nn.Sequential(nn.LazyLinear(width), nn.Tanh())

    m = _fit(VarProNetRegressor(factory, {"width": 6}, max_iter=3, random_state=0, device="cpu"), X, y)
    assert m.width_ == 6
    instance = MLPFeatures(X.shape[1], (5,))
    m = _fit(VarProNetRegressor(instance, max_iter=3, random_state=0, device="cpu"), X, y)
    assert m.width_ == 5 and m.module_ is not instance  # copied, never trained in place
    with pytest.raises(ValueError, match="module_kwargs must be empty"):
        VarProNetRegressor(instance, {"hidden_layer_sizes": (3,)}, device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="must build a torch.nn.Module"):
        VarProNetRegressor(lambda: "not a module", device="cpu").fit(X, y)
    with pytest.raises(ValueError, match=r"features \(n, M\)"):
        VarProNetRegressor(_Unflattened, device="cpu").fit(X, y)
    # invalid values of alpha, the momenta, regularization, module: the spec's bad_params (tests/conftest.py)


def test_mlp_features_first_layer_has_the_input_gain():
    """MLPFeatures' first layer is drawn with std input_gain / sqrt(d) (default 0.6: pre-activations of std 0.6 on
    standardised inputs), every later one with its activation's gain; a non-positive gain is refused."""
    d = 50
    torch.manual_seed(0)
    net = MLPFeatures(d, (400, 300)).net
    first, second = net[0].weight, net[2].weight
    assert abs(float(first.std()) * d**0.5 - 0.6) < 0.02
    assert abs(float(second.std()) * 400**0.5 - 5.0 / 3.0) < 0.03
    assert abs(float(MLPFeatures(d, (400,), input_gain=2.0).net[0].weight.std()) * d**0.5 - 2.0) < 0.05
    with pytest.raises(ValueError, match="input_gain"):
        MLPFeatures(d, (4,), input_gain=0.0)


class _Unflattened(nn.Module):
    """Returns a 3-D tensor: the estimator must ask for nn.Flatten."""

    def forward(self, X):
        return X[:, None, :]


# ---------------------------------------------------------------------------------------------- a 1-D CNN


class TinyCNN(nn.Module):
    """A user's 1-D CNN on sequences of 40 values given as rows (the MNIST-1D shape), reshaped inside."""

    def __init__(self, n_features_in, channels=8):
        super().__init__()
        self.n_features_in = n_features_in
        self.net = nn.Sequential(nn.Conv1d(1, channels, 5, stride=2, padding=2), nn.Tanh(),
                                 nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.Tanh(), nn.Flatten())

    def forward(self, X):
        return self.net(X.reshape(-1, 1, self.n_features_in))


def _sequences(n, seed):
    """Three classes of noisy, randomly shifted bumps of different widths on 40 points (MNIST-1D shaped)."""
    rng = np.random.RandomState(seed)
    t = np.arange(40)
    y = rng.randint(3, size=n)
    shift = rng.randint(-8, 9, size=n)
    width = np.array([1.5, 3.0, 6.0])[y]
    X = np.exp(-0.5 * ((t[None, :] - 20 - shift[:, None]) / width[:, None]) ** 2) + 0.1 * rng.randn(n, 40)
    return (X - X.mean()) / X.std(), y


@pytest.mark.parametrize("module", [TinyCNN, Conv1dFeatures])
def test_a_1d_cnn_module_works(module):
    X, y = _sequences(300, 0)
    Xt, yt = _sequences(200, 1)
    kw = {"channels": 8} if module is TinyCNN else {"channels": 8, "n_layers": 2}
    m = _fit(VarProNetClassifier(module, kw, max_iter=30, batch_size=64, random_state=0, device="cpu"), X, y)
    assert m.width_ == 8 * 10
    assert m.score(Xt, yt) > 0.85  # chance: 1/3
    assert isinstance(m.module_, module)
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.predict_proba(Xt), m.predict_proba(Xt))

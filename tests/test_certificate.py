"""The convergence certificate before training (thesis Thm. II.3, II.7, Prop. II.6.1) and the readable report."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_friedman1
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skflow import MeanFieldNODERegressor, VarProSHLRegressor
from skflow._certificate import node_certificate
from skflow.diagnostics import ConvergenceReport, convergence_report, kernel_lambda_min
from skflow.flows._ops import lift
from skflow.inspection import ConvergenceCertificate, certify
from skflow.inspection._certificate import CERTIFY_GRID


@pytest.fixture(scope="module")
def friedman():
    X, y = make_friedman1(n_samples=300, noise=0.5, random_state=0)
    return StandardScaler().fit_transform(X), y


def _node(**kw):
    params = dict(width=64, n_layers=4, early_stopping=False, tol=0, random_state=0)
    params.update(kw)
    return MeanFieldNODERegressor(**params)


def test_certificate_quantities_against_independent_computations(friedman):
    X, y = friedman
    cert = certify(_node(output_scale=4.0), X, y)
    assert isinstance(cert, ConvergenceCertificate) and isinstance(cert, dict)
    # width < n: lambda_0 is the closed-form kernel on the lifted inputs (Cor. II.5.1)
    lam = kernel_lambda_min(lift(torch.as_tensor(X), X.shape[1] + 1), "gaussian", 0.25, 1.5)
    assert cert["lambda_0"] == pytest.approx(lam, rel=1e-10)
    assert cert["lambda_0_finite"] == 0.0
    assert cert["initial_risk"] == pytest.approx(0.5, rel=1e-12)  # standardised targets, u = 0
    assert cert["pl_constant_init"] == pytest.approx(2 * 16 * lam / 300)
    assert cert["pl_constant_ball"] == pytest.approx(cert["pl_constant_init"] / 2)
    assert 0 < cert["radius"] <= 1 and cert["kernel_slope"] > 0
    # the exact P-L ratio at mu_0 is what the engine records at its first step, on the same particles
    fit = _node(output_scale=4.0, max_iter=1).fit(X, y)
    assert cert["pl_ratio_init"] == pytest.approx(fit.pl_ratio_curve_[0], rel=1e-10)
    assert cert["pl_ratio_init"] >= cert["pl_constant_init"]


def test_wide_network_uses_the_finite_width_kernel(friedman):
    X, y = friedman[0][:40], friedman[1][:40]
    est = _node(width=128, output_scale=2.0)
    cert = certify(est, X, y)
    assert cert["lambda_0_source"].startswith("finite width")
    fit = _node(width=128, output_scale=2.0, max_iter=1).fit(X, y)
    assert cert["lambda_0"] == pytest.approx(fit.kernel_lambda_min_, rel=1e-8)
    # Rayleigh quotient of the averaged kernel >= mean of the layers' lambda_min (Eq. II.15 at u = 0)
    assert fit.pl_ratio_curve_[0] >= cert["pl_constant_init"] * (1 - 1e-12)
    assert cert["pl_ratio_init"] == pytest.approx(fit.pl_ratio_curve_[0], rel=1e-10)


def test_condition_is_monotone_in_the_output_scale(friedman):
    X, y = friedman
    certs = [certify(_node(output_scale=a), X, y) for a in (1.0, 2.0**10, 2.0**20)]
    a_min = certs[0]["min_output_scale"]
    assert 2.0**10 < a_min < 2.0**20
    for c in certs:
        # R(mu_0) and r do not depend on alpha, m grows like alpha^2 (Prop. II.6.1)
        assert c["initial_risk"] == pytest.approx(certs[0]["initial_risk"])
        assert c["radius"] == pytest.approx(certs[0]["radius"])
        assert c["condition_rhs"] == pytest.approx(certs[0]["condition_rhs"] * c["output_scale"] ** 2)
        assert c["condition_holds"] == (c["output_scale"] > a_min)
        assert c["min_output_scale"] == pytest.approx(a_min)
    assert np.isnan(certs[0]["predicted_rate"]) and "fails" in certs[0]["reason"]
    assert certs[2]["predicted_rate"] == certs[2]["pl_constant_ball"] and "holds" in certs[2]["reason"]
    chosen = certify(_node(output_scale="certify"), X, y)
    assert chosen["condition_holds"] and chosen["output_scale"] in CERTIFY_GRID
    assert chosen["output_scale"] / 2 <= a_min < chosen["output_scale"]


def test_certified_fit_converges_at_least_at_the_predicted_rate(friedman):
    X, y = friedman
    est = _node(width=128, n_layers=8, output_scale="certify", max_iter=300).fit(X, y)
    cert = est.certificate_
    assert cert["condition_holds"]
    assert est.output_scale_ == cert["output_scale"] and est.flow_.output_scale == est.output_scale_
    assert est.learning_rate_ == pytest.approx(0.1 * 16 / est.output_scale_**2)
    rep = est.convergence_report_
    assert rep["certificate"] is cert and rep["predicted_rate"] == cert["predicted_rate"]
    assert rep["rate_at_least_predicted"]
    assert rep["observed_rate"] >= cert["predicted_rate"]
    slope = -np.polyfit(est.flow_time_, np.log(est.loss_curve_), 1)[0]
    assert slope >= cert["predicted_rate"]
    # the guarantee itself: R(t) <= R(0) exp(-m t) at every recorded time
    assert np.all(est.loss_curve_ <= est.loss_curve_[0] * np.exp(-cert["predicted_rate"] * est.flow_time_)
                  * (1 + 1e-9))


def test_certify_raises_when_no_scale_works(friedman):
    X, y = friedman
    cert = certify(_node(activation="tanh", output_scale=4.0), X, y)  # no closed form, width < n
    assert cert["lambda_0"] == 0 and not cert["condition_holds"]
    assert "lambda_0 = 0" in cert["reason"]
    with pytest.raises(ValueError, match="certify"):
        _node(activation="tanh", output_scale="certify", max_iter=2).fit(X, y)


def test_certificate_and_report_render(friedman):
    X, y = friedman
    cert = certify(_node(output_scale=2.0**20), X, y)
    text, html = str(cert), cert._repr_html_()
    for s in ("lambda_0", "R(mu_0)", "radius", "predicted rate", "holds"):
        assert s in text
    assert html.startswith("<div>") and "<table>" in html and "radius" in html
    rep = convergence_report([1.0, 0.5, 0.25], [0.0, 1.0, 2.0], [0.6, 0.6, 0.6], lambda_0=0.1, n_samples=10,
                             displacement_curve=[0.0, 1.0, 2.0], predicted_rate=0.5)
    assert isinstance(rep, ConvergenceReport) and isinstance(rep, dict)
    assert rep["rate_at_least_predicted"] and rep["observed_rate"] == pytest.approx(np.log(4) / 2)
    text = str(rep)
    assert "observed rate" in text and "held along the run" in text and "at least" in text
    assert "<table>" in rep._repr_html_() and "P-L bound" in rep._repr_html_()
    rep["kernel_note"] = "singular kernel"
    assert "Note: singular kernel" in str(rep)


def test_pipeline_support(friedman):
    X, y = make_friedman1(n_samples=120, noise=0.5, random_state=1)
    pipe = make_pipeline(StandardScaler(), _node(output_scale=8.0))
    direct = certify(_node(output_scale=8.0), StandardScaler().fit_transform(X), y)
    piped = certify(pipe, X, y)
    for key in ("lambda_0", "initial_risk", "pl_ratio_init", "radius", "condition_rhs"):
        assert piped[key] == pytest.approx(direct[key], rel=1e-10)
    with pytest.raises(TypeError, match="MeanFieldNODERegressor"):
        certify(make_pipeline(StandardScaler(), Ridge()), X, y)


def test_certified_fit_with_auto_learning_rate():
    X, y = make_friedman1(n_samples=120, noise=0.5, random_state=2)
    X = StandardScaler().fit_transform(X)
    est = _node(output_scale="certify", learning_rate="auto", max_iter=40).fit(X, y)
    # the 'auto' search is centred on 0.1 * 16 / output_scale_^2, where the stiff flow is stable
    assert est.learning_rate_ <= 0.1 * 64 / est.output_scale_**2
    assert est.convergence_report_["rate_at_least_predicted"]


def test_pl_ratio_in_row_chunks_matches_one_pass(friedman):
    from skflow._certificate import _pl_ratio
    from skflow.flows.node import MeanFieldSHLFlow, init_particles

    X, y = friedman
    Xt, Yt = torch.as_tensor(X), torch.as_tensor((y - y.mean()) / y.std())[:, None]
    U, W, b = init_particles(2, 16, X.shape[1] + 1, generator=torch.Generator().manual_seed(0))
    U = U + 0.1 * torch.randn(U.shape, generator=torch.Generator().manual_seed(1), dtype=U.dtype)
    flow = MeanFieldSHLFlow(U, W, b, X.shape[1], 1, output_scale=3.0)
    assert _pl_ratio(flow, Xt, Yt, chunk=70) == pytest.approx(_pl_ratio(flow, Xt, Yt), rel=1e-10)


@pytest.mark.parametrize("make", [Ridge, VarProSHLRegressor, lambda: make_pipeline(StandardScaler(), Ridge()),
                                  lambda: "not an estimator"], ids=["Ridge", "VarPro", "pipeline", "string"])
def test_certify_refuses_estimators_it_does_not_cover_with_a_type_error(friedman, make):
    X, y = friedman
    with pytest.raises(TypeError, match="certify covers MeanFieldNODERegressor only"):
        certify(make(), X, y)


def test_certify_asks_the_estimator_for_its_initialisation(friedman):
    """The one hook, ``_initial_state``: the data and the exact initial particles of ``fit``, self unchanged."""
    X, y = friedman
    est = _node(output_scale=4.0)
    params = est.get_params()
    state = est._initial_state(X, y)
    assert est.get_params() == params and not hasattr(est, "flow_")
    fit = _node(output_scale=4.0, max_iter=1).fit(X, y)
    np.testing.assert_array_equal(state["W"].numpy(), fit.W_init_)
    np.testing.assert_array_equal(state["b"].numpy(), fit.b_init_)
    assert state["Y"].shape == (300, 1) and state["Y"].numpy().std() == pytest.approx(1.0)
    direct = node_certificate(**state)
    assert certify(est, X, y)["lambda_0"] == direct["lambda_0"]


def test_the_certificate_maths_lie_below_the_estimators():
    import skflow._certificate as maths
    import skflow.inspection._certificate as presentation

    assert maths.node_certificate is presentation.node_certificate
    assert maths.ConvergenceCertificate is ConvergenceCertificate


def test_certify_a_model_interrupted_in_its_first_step(friedman, monkeypatch):
    """A fitted model with ``n_iter_ = 0`` (interrupted in its first step) certifies as the unfitted one."""
    from skflow.exceptions import FitInterruptedWarning
    from skflow.flows.node import MeanFieldSHLFlow

    X, y = friedman
    reference = certify(_node(output_scale=4.0), X, y)

    def interrupted(self, X, Y, lr):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(MeanFieldSHLFlow, "step", interrupted)
        with pytest.warns(FitInterruptedWarning):
            est = _node(output_scale=4.0, max_iter=5).fit(X, y)
    assert est.n_iter_ == 0
    cert = certify(est, X, y)
    for key in ("lambda_0", "initial_risk", "pl_ratio_init", "radius", "condition_rhs"):
        assert cert[key] == reference[key]


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_certify_one_input_feature(n_outputs):
    """A single input feature (and several outputs): the certificate of the lifted inputs, no IndexError."""
    X = np.linspace(-2, 2, 12)[:, None]
    y = np.sin(X[:, 0]) if n_outputs == 1 else np.c_[np.sin(X[:, 0]), np.cos(X[:, 0])]
    for width in (8, 32):  # closed form (M < n), finite width (M >= n)
        cert = certify(_node(width=width, output_scale=4.0, feature_scale=2.0), X, y)
        assert cert["n_samples"] == 12 and np.isfinite(cert["initial_risk"]) and cert["lambda_0"] >= 0
        assert np.isfinite(cert["pl_ratio_init"]) and 0 <= cert["radius"] <= 1
    lam = kernel_lambda_min(lift(torch.as_tensor(X), 1 + n_outputs), "gaussian", 2.0, 1.5)
    assert lam > 0
    assert certify(_node(width=8, output_scale=4.0, feature_scale=2.0), X, y)["lambda_0"] == pytest.approx(lam)

"""A convergence certificate before training: the sufficient local P-L condition on the data and the initialisation.

For the mean-field NODE with SHL residuals (:class:`skflow.MeanFieldNODERegressor`) the certificate evaluates,
at the initialisation ``mu_0`` and on the training data, the quantities of the local convergence theorem
(thesis Thm. II.3 / Thm. II.7 with the lifting and scaling of Prop. II.6.1):

* ``lambda_0 = int_0^1 lambda_min(K^1[mu_0(.|s), x_{mu_0}(s)]) ds`` (Eq. II.39): the closed-form infinite-width
  kernel of Cor. II.5.1 (Eq. II.40) on the lifted inputs, or the finite-width one when ``width >= n``;
* ``R(mu_0)``: the initial risk; with ``u = 0`` the NODE is the identity, predictions are 0 and
  ``R(mu_0) = (1/2N) sum |y|^2`` whatever the output scale (Prop. II.6.1);
* ``m_0 = 2 alpha^2 lambda_0 / N``: the P-L constant at the initialisation (Eq. II.41 with ``C = 0``: at ``u = 0``
  the adjoint is constant in depth);
* the radius ``r`` of the ball of ``W2_COT`` on which ``Lambda(mu) >= lambda_0 / 2`` (proof of Thm. II.7), from
  the local Lipschitz constant of ``mu -> Lambda(mu)`` (Lemma II.5.1), estimated numerically by its metric slope
  at ``mu_0``;
* the P-L constant on that ball ``m = alpha^2 lambda_0 / N = m_0 / 2`` and the sufficient condition
  ``R(mu_0) < m r^2 / 4`` (Eq. II.10). When it holds, ``R(mu_t) <= R(mu_0) exp(-m t)``: ``m`` is the predicted
  linear rate in flow time (the unit of ``learning_rate``).

What is estimated rather than proved. The theorem leaves two constants implicit, and the certificate replaces
them by numerical values at ``mu_0``: (i) the Lipschitz constant of Lemma II.5.1 (worst case
``N C e^{C E_2(mu_0)}``) by the metric slope ``L = ||grad Lambda||_{L2(mu_0)}`` of ``Lambda`` at ``mu_0``, so that
``r = min(1, lambda_0 / (2 L))`` is the first-order radius (the ``min(1, .)`` of the proof of Thm. II.7); with
``M < n`` the slope is a Monte-Carlo estimate on the ``M`` initial particles of the infinite-width one; (ii) the
adjoint factor ``e^{-C}`` of Eq. II.15 / II.41, which is exactly 1 at ``mu_0`` (``u = 0``), is taken as 1 in the
ball. ``lambda_0`` on a subsample of ``kernel_subsample`` rows is optimistic (a principal submatrix has a larger
``lambda_min``). The rate is thus a first-order guarantee, conservative by the factor 2 of the proof.

Only the NODE is covered (the RKHS NODE has its own bound, :func:`skflow.diagnostics.pl_bound`).

This module holds the mathematics, on tensors, below the estimators: :class:`skflow.MeanFieldNODERegressor` calls
:func:`node_certificate` for ``output_scale='certify'``, and :func:`skflow.inspection.certify` presents it for an
estimator (it asks the estimator for its initialisation through the estimator's ``_initial_state`` hook).
"""

import math

import torch

from ._arrays import seeded_subsample
from ._tables import html_table, text_table
from .diagnostics.kernels import lambda_min, shl_limit_kernel
from .flows._ops import ACTIVATIONS, lift
from .flows.node import MeanFieldSHLFlow

__all__ = ["CERTIFY_GRID", "ConvergenceCertificate", "node_certificate"]

#: output scales tried by ``output_scale='certify'``: ``2^k``, ``k = 0..40``
CERTIFY_GRID = tuple(2.0 ** k for k in range(41))

_ROWS = (
    ("output_scale", "output scale alpha"),
    ("n_samples", "N (training points)"),
    ("lambda_0", "lambda_0 (Eq. II.39)"),
    ("initial_risk", "R(mu_0)"),
    ("pl_constant_init", "m_0 = 2 alpha^2 lambda_0 / N"),
    ("pl_ratio_init", "|grad R|^2 / R at mu_0"),
    ("kernel_slope", "Lipschitz const. of Lambda (Lem. II.5.1)"),
    ("radius", "radius r (Lambda >= lambda_0 / 2)"),
    ("condition_rhs", "m r^2 / 4 (Eq. II.10)"),
    ("min_output_scale", "smallest certified alpha"),
    ("predicted_rate", "predicted rate m = m_0 / 2"),
)


class ConvergenceCertificate(dict):
    """The quantities of the sufficient local P-L condition (thesis Thm. II.3, II.7, Prop. II.6.1), as a dict.

    Keys: ``output_scale``, ``n_samples``, ``n_kernel_samples``, ``lambda_0`` (with ``lambda_0_source``,
    ``lambda_0_exact``, ``lambda_0_finite``), ``initial_risk``, ``pl_constant_init``, ``pl_ratio_init``,
    ``kernel_slope``, ``radius``, ``pl_constant_ball``, ``condition_rhs``, ``condition_holds``,
    ``min_output_scale``, ``predicted_rate`` (NaN when the condition fails) and ``reason`` (a sentence).
    ``print`` shows a short table; notebooks render it as HTML.
    """

    def _rows(self):
        return [(label, self[key]) for key, label in _ROWS if key in self]

    _title = "Convergence certificate (local P-L condition, Thm. II.7)"

    def __str__(self):
        return text_table(self._title, self._rows(), [self.get("reason", "")])

    def _repr_html_(self):
        return html_table(self._title, self._rows(), [self.get("reason", "")])


def _lambda_pieces(Z, W, b, activation, feature_init, feature_scale, nu):
    """``lambda_0`` and the unit eigenvectors ``v_k`` attaining it, per layer, at ``u = 0`` (Eq. II.38-II.40).

    At ``u = 0`` every layer sees the lifted inputs ``Z``. The finite-width ``K^1_k = Phi_k Phi_k^T / M`` is used
    when ``M >= n`` (its ``lambda_min`` is exactly 0 below), the closed form of Cor. II.5.1 otherwise.
    Returns ``(lambda_0, V, source, lambda_exact, lambda_finite)`` with ``V`` of shape (S, n).
    """
    S, M, _ = W.shape
    n = Z.shape[0]
    lam_exact = float("nan")
    if activation == "cos":
        lam_exact = max(lambda_min(shl_limit_kernel(Z, feature_init, feature_scale, nu)), 0.0)
    lam_finite, V_finite = 0.0, None
    if M >= n:
        Phi = ACTIVATIONS[activation](torch.baddbmm(b[:, None, :], Z.expand(S, n, Z.shape[1]), W.transpose(1, 2)))[0]
        ev, vec = torch.linalg.eigh(Phi @ Phi.transpose(1, 2) / M)
        lam_finite, V_finite = float(ev[:, 0].clamp_min(0).mean()), vec[:, :, 0]
        return lam_finite, V_finite, "finite width (M >= n)", lam_exact, lam_finite
    if activation != "cos":
        return 0.0, torch.zeros(S, n, dtype=Z.dtype), "finite width (M < n: singular)", lam_exact, lam_finite
    ev, vec = torch.linalg.eigh(shl_limit_kernel(Z, feature_init, feature_scale, nu).double())
    return lam_exact, vec[:, 0].expand(S, n).clone(), "closed form (infinite width, Cor. II.5.1)", lam_exact, 0.0


def _kernel_slope(flow, X, V, train_features):
    """Metric slope of ``Lambda(mu) = (1/S) sum_k lambda_min(K^1_k[mu])`` at ``mu_0`` for ``W2_COT``.

    ``Lambda`` is locally Lipschitz in ``W2_COT`` (Lemma II.5.1); its local constant at ``mu_0`` is the norm of
    its Wasserstein gradient, ``||grad Lambda||_{L2(mu)}^2 = S M sum_{k,i} |dLambda/dtheta_{k,i}|^2`` (the scaling
    of the engine's P-L ratio). ``d lambda_min = v^T dK v`` at a simple eigenvalue, so the derivative is taken on
    ``(1/S) sum_k v_k^T K^1_k v_k`` with the eigenvectors ``v_k`` frozen. Through the trajectory it includes the
    effect of ``u`` on the states ``x_mu(s_k)``. Only trained parameters count (``u`` alone when the features
    are frozen).
    """
    S, M = flow.n_layers, flow.width
    params = [t.detach().clone().requires_grad_(True) for t in (flow.U, flow.W, flow.b)]
    with torch.enable_grad():
        zs = flow.trajectory(X, *params)
        act = ACTIVATIONS[flow.activation]
        total = 0.0
        for k in range(S):
            Phi, _ = act(torch.addmm(params[2][k], zs[k], params[1][k].T))
            total = total + ((V[k] @ Phi) ** 2).sum() / (M * S)
        grads = torch.autograd.grad(total, params if train_features else params[:1], allow_unused=True)
    sq = sum(float((g * g).sum()) for g in grads if g is not None)
    return math.sqrt(S * M * sq)


def _pl_ratio(flow, X, Y, chunk=4096):
    """``||grad R[mu_0]||^2 / R(mu_0) = S M sum |dR/dtheta|^2 / R`` (what the engine records), in row chunks."""
    n = X.shape[0]
    total = None
    for start in range(0, n, chunk):
        parts = flow.gradients(X[start:start + chunk], Y[start:start + chunk])
        w = min(chunk, n - start) / n  # R and its gradients are means over the rows
        total = [w * p for p in parts] if total is None else [t + w * p for t, p in zip(total, parts)]
    R, gU, gW, gb = total
    sq = (gU * gU).sum()
    if flow.train_features:
        sq = sq + (gW * gW).sum() + (gb * gb).sum()
    return float(flow.n_layers * flow.width * sq / R) if float(R) > 0 else float("nan")


def _choose_scale(R0, lam, radius, n):
    """Smallest ``alpha`` of :data:`CERTIFY_GRID` with ``R0 < alpha^2 lambda_0 r^2 / (4 N)`` (Eq. II.10, II.41).

    ``R0`` and ``r`` do not depend on ``alpha`` while ``m = alpha^2 lambda_0 / N`` grows like ``alpha^2``
    (Prop. II.6.1), so the condition holds from ``alpha* = sqrt(4 N R0 / (lambda_0 r^2))`` on. Returns
    ``(alpha*, alpha)``, with ``alpha`` None when ``alpha*`` is beyond the grid.
    """
    if not (lam > 0 and radius > 0):
        return float("inf"), None
    a_min = math.sqrt(4.0 * n * R0 / (lam * radius * radius))
    chosen = next((a for a in CERTIFY_GRID if a > a_min), None)
    return a_min, chosen


def _reason(cert):
    """The sentence of the certificate: whether the condition holds, and why not."""
    alpha, lam = cert["output_scale"], cert["lambda_0"]
    if not lam > 0:
        return (f"The condition fails: lambda_0 = 0 ({cert['lambda_0_source']}), so the initial kernel gives no "
                "P-L inequality (Thm. II.7 needs lambda_0 > 0; use width >= n or the cos activation).")
    if cert["condition_holds"]:
        return (f"The sufficient P-L condition R(mu_0) = {cert['initial_risk']:.4g} < m r^2 / 4 = "
                f"{cert['condition_rhs']:.4g} holds at output scale {alpha:g}: the gradient flow stays in the "
                f"ball of radius {cert['radius']:.3g} and R(t) <= R(0) exp(-{cert['predicted_rate']:.4g} t).")
    return (f"The condition fails at output scale {alpha:g}: R(mu_0) = {cert['initial_risk']:.4g} >= m r^2 / 4 = "
            f"{cert['condition_rhs']:.4g}; it holds from output scale {cert['min_output_scale']:.4g} on "
            "(Prop. II.6.1).")


def node_certificate(X, Y, W, b, *, output_scale, activation="cos", feature_init="gaussian",
                     feature_scale=0.25, nu=1.5, train_features=True, kernel_subsample=1000):
    """Certificate of a mean-field SHL NODE at the identity initialisation ``(U = 0, W, b)`` on ``(X, Y)``.

    ``X`` (N, d) and ``Y`` (N, d') are float64 tensors (``Y`` as trained on, i.e. standardised),
    ``W`` (S, M, D) and ``b`` (S, M) the initial features. ``output_scale`` is a float or 'certify' (the
    smallest ``2^k`` for which the condition holds; ``ValueError`` if none of :data:`CERTIFY_GRID` does).
    ``lambda_0`` is computed on at most ``kernel_subsample`` points: a principal submatrix has a larger
    ``lambda_min``, so above that size it is optimistic. See the module docstring for the quantities.
    """
    S, M, D = W.shape
    d, dout = X.shape[1], Y.shape[1]
    idx = seeded_subsample(X.shape[0], kernel_subsample)
    Xs = X if idx is None else X[torch.as_tensor(idx)]
    lam, V, source, lam_exact, lam_finite = _lambda_pieces(lift(Xs, D), W, b, activation, feature_init,
                                                           feature_scale, nu)
    flow = MeanFieldSHLFlow(torch.zeros_like(W), W, b, d, dout, activation=activation, output_scale=1.0,
                            train_features=train_features)
    n = X.shape[0]
    R0 = float(0.5 * (Y * Y).sum() / n)
    slope = _kernel_slope(flow, Xs, V, train_features)
    radius = min(1.0, lam / (2.0 * slope)) if lam > 0 and slope > 0 else (1.0 if lam > 0 else 0.0)
    a_min, chosen = _choose_scale(R0, lam, radius, n)
    if output_scale == "certify":
        if chosen is None:
            raise ValueError(
                f"output_scale='certify': no output scale up to {CERTIFY_GRID[-1]:g} satisfies the local P-L "
                f"condition (lambda_0 = {lam:.3g}, radius = {radius:.3g}, smallest admissible scale "
                f"{a_min:.3g}). Use a wider network, a larger feature_scale, or a fixed output_scale.")
        output_scale = chosen
    alpha = float(output_scale)
    flow.output_scale = alpha
    cert = ConvergenceCertificate(
        output_scale=alpha, n_samples=n, n_kernel_samples=Xs.shape[0], lambda_0=lam, lambda_0_source=source,
        lambda_0_exact=lam_exact, lambda_0_finite=lam_finite, initial_risk=R0,
        pl_constant_init=2.0 * alpha**2 * lam / n, pl_ratio_init=_pl_ratio(flow, X, Y), kernel_slope=slope,
        radius=radius, pl_constant_ball=alpha**2 * lam / n, min_output_scale=a_min)
    cert["condition_rhs"] = cert["pl_constant_ball"] * radius**2 / 4.0
    cert["condition_holds"] = bool(lam > 0 and R0 < cert["condition_rhs"])
    cert["predicted_rate"] = cert["pl_constant_ball"] if cert["condition_holds"] else float("nan")
    cert["reason"] = _reason(cert)
    return cert

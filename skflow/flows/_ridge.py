"""The ridge projection of the VarPro networks and its exact leave-one-out path (thesis Eq. III.8, III.41, III.43).

For fixed features ``Phi`` (N, M) the outer weights minimise::

    R(u) = (1/2N) |Phi u / M - Y|^2 + (lambda / 2M) |u - c|^2,

``c = 0`` ("biased") or ``c = 1`` ("unbiased"): a ridge regression, solved exactly (:func:`ridge_projection`),
and for a grid of strengths at once with its leave-one-out error (:func:`ridge_loo_path`, as scikit-learn's
``RidgeCV``). Shared by :mod:`skflow.flows.varpro` and :mod:`skflow.flows.varpronet`; pure torch.
"""

import torch

from ._ops import regularizer_centre, split_weights

__all__ = ["DEFAULT_ALPHAS", "FLOAT64_GRAM_BELOW", "centre", "loo_eigen", "loo_squares", "ridge_loo_path",
           "ridge_projection", "risk_parts", "root_weighted", "select_ridge", "solve_primal"]

#: below this ridge strength the Gram matrix is formed in float64 too: its round-off in float32
#: (~1e-7 ||K||) would otherwise be comparable to lambda and the solve would be meaningless.
FLOAT64_GRAM_BELOW = 1e-2



def root_weighted(Y, weighted, *features):
    """``(Y, *features)`` of a batch whose ``Y`` carries the rows' weights ``w`` as its last column (``weighted``):
    the targets without it, and they and the features (``Phi``, ``sigma'``, each (n, M)) times ``sqrt(w)`` per row.

    The weighted risk ``(1/2N) sum_n w_n |Phi_n u / M - y_n|^2`` of fixed features is the plain risk of the scaled
    rows, so the projection, its exact (weighted) leave-one-out path and the feature gradient
    ``sum_n w_n (r_n . u_i) sigma'_ni x_bar_n`` are the unweighted formulas on them: a row of weight 0 is a row of
    zeros, which changes none of the sums (``../SPEC.md`` §5). Unweighted batches pass through unchanged.
    """
    if not weighted:
        return (Y, *features)
    Y, w = split_weights(Y, True)
    root = w.clamp(min=0.0).sqrt()[:, None]
    return (Y * root, *(None if F is None else F * root for F in features))


def centre(regularization, M, n_out, like):
    """Minimiser ``c`` of the regulariser ``f``: 0 (biased) or the vector of ones (unbiased, the teacher's u)."""
    return torch.full((M, n_out), regularizer_centre(regularization), dtype=like.dtype, device=like.device)


def solve_primal(G, PtY, N, M, lam, c):
    """``u`` solving ``(G / (N M) + lambda I) u = PtY / N + lambda c`` by Cholesky, in float64 (Eq. III.43):
    the projection from the sums over rows ``G = Phi^T Phi`` and ``PtY = Phi^T Y``."""
    K = G / (N * M)
    K.diagonal().add_(lam)
    L, _ = torch.linalg.cholesky_ex(K)
    return torch.cholesky_solve(PtY / N + lam * c, L)


def loo_eigen(G, PtY, N, M, lams, c):
    """From the sums ``G = Phi^T Phi`` and ``PtY = Phi^T Y`` over ``N`` rows: the eigenvectors ``V`` of
    ``A^T A`` (``A = Phi / M``), the weights ``w = 1 / (s^2 + mu)`` (n_lams, M), ``B = V^T A^T Y~`` and the
    projection ``u`` (n_lams, M, n_out) for every strength (see :func:`ridge_loo_path`)."""
    AtA = G / (M * M)
    AtYt = PtY / M - c * AtA.sum(1, keepdim=True)  # A^T (Y - A 1 c)
    s2, V = torch.linalg.eigh(AtA)
    B = V.T @ AtYt
    mu = (N / M) * lams.to(G)
    w = 1.0 / (s2.clamp(min=0.0)[None, :] + mu[:, None])
    return V, w, B, c + torch.einsum("km,lm,mo->lko", V, w, B)


def loo_squares(Phi, Y, V, w, B, M, c):
    """Sum over the rows of ``Phi`` of the squared leave-one-out residuals, for every strength (n_lams,)."""
    A = Phi.double() / M
    Yt = Y.double() - A.sum(1, keepdim=True) * c
    AV = A @ V
    fit = torch.einsum("nm,lm,mo->lno", AV, w, B)  # H Y~ for every strength
    h = w @ (AV * AV).T  # (n_lams, n): diag(H)
    e = (Yt[None] - fit) / (1.0 - h)[..., None]
    return (e * e).sum((1, 2))


def ridge_projection(Phi, Y, lam, regularization="biased", reduce=None):
    """Exact minimiser ``u* = argmin_u R(omega, u)`` for fixed features (thesis Eq. III.8, III.43).

    Primal (``N >= M``)::

        (K + lambda I_M) u = Phi^T Y / N + lambda c,      K = Phi^T Phi / (N M),

    with ``c = 0`` (biased) or ``c = 1`` (unbiased). Dual (``N < M``): writing ``u = c + v``, the push-through
    identity ``(A^T A + lambda)^-1 A^T = A^T (A A^T + lambda)^-1`` gives::

        v = Phi^T (Phi Phi^T / (N M) + lambda I_N)^-1 (Y - Phi c / M) / N,

    an ``N x N`` system instead of ``M x M``. Both are solved by Cholesky (the matrices are SPD for
    ``lambda > 0``) in float64; the Gram product is also formed in float64 when ``lambda`` is small.

    Parameters
    ----------
    Phi : Tensor (N, M)
    Y : Tensor (N, n_outputs)
    lam : float
        Ridge strength ``lambda > 0``.
    regularization : {'biased', 'unbiased'}
    reduce : callable or None
        Data-parallel fits (:meth:`skflow.flows._flow.Flow.sum_rows`): ``reduce(n, *sums) -> (N, *totals)`` sums
        this rank's sums over its ``n`` rows over the ranks. The primal system is then solved, from the Gram
        matrix and right-hand side of all the ranks' rows (the dual one would need the rows themselves).

    Returns
    -------
    Tensor (M, n_outputs), in the dtype of ``Phi``.
    """
    N, M = Phi.shape
    out_dtype = Phi.dtype
    if lam < FLOAT64_GRAM_BELOW or out_dtype == torch.float64:
        P, Yw = Phi.double(), Y.double()
    else:
        P, Yw = Phi, Y.to(Phi.dtype)
    c = centre(regularization, M, Y.shape[1], P.to(torch.float64))
    if reduce is not None or N >= M:
        G, PtY = (P.T @ P).double(), (P.T @ Yw).double()
        if reduce is not None:  # data-parallel: the sums of all the ranks' rows
            N, G, PtY = reduce(N, G, PtY)
        u = solve_primal(G, PtY, N, M, lam, c)
    else:
        G = (P @ P.T).double() / (N * M)
        G.diagonal().add_(lam)
        P64 = P.double()
        Yr = Yw.double() - P64 @ c / M
        L, _ = torch.linalg.cholesky_ex(G)
        a = torch.cholesky_solve(Yr, L)
        u = c + P64.T @ a / N
    return u.to(out_dtype)


#: grid of ridge strengths searched by ``lam='auto'`` (log-spaced; the tangent kernel has ``||K||_op = O(1)``)
DEFAULT_ALPHAS = tuple(float(a) for a in torch.logspace(-4, 1, 11, dtype=torch.float64))


def ridge_loo_path(Phi, Y, lams, regularization="biased", reduce=None):
    """Exact leave-one-out error of the ridge projection for every strength in ``lams``, from one eigendecomposition.

    The projection minimises ``(1/2N) |Phi u / M - Y|^2 + (lambda / 2M) |u - c|^2`` (Eq. III.43). With
    ``A = Phi / M``, ``v = u - c`` and ``Y~ = Y - A c`` this is ridge regression of ``Y~`` on ``A`` with strength
    ``mu = N lambda / M``. From ``A^T A = V diag(s^2) V^T`` the hat matrix is
    ``H = (A V) diag(1 / (s^2 + mu)) (A V)^T``, and the leave-one-out residual of row ``n`` is
    ``e_n / (1 - H_nn)``: the error of the projection refitted without row ``n`` (same ``mu``), for every
    ``lambda`` at the cost of one ``M x M`` eigendecomposition, as in scikit-learn's ``RidgeCV``.

    Parameters
    ----------
    Phi : Tensor (N, M)
    Y : Tensor (N, n_outputs)
    lams : Tensor (n_lams,)
        Ridge strengths ``lambda > 0``.
    regularization : {'biased', 'unbiased'}
    reduce : callable or None
        Data-parallel fits, as for :func:`ridge_projection`: ``A^T A`` and ``A^T Y~`` are summed over the ranks
        (the eigendecomposition is then the same on every rank), the leave-one-out residuals of each rank's
        rows are computed locally and their squares summed over the ranks.

    Returns
    -------
    loo : Tensor (n_lams,)
        Mean over rows of the squared leave-one-out residual (summed over outputs), in float64.
    u : Tensor (n_lams, M, n_outputs)
        The exact projection ``u*`` on all rows for each strength, in float64.
    """
    P = Phi.double()
    N, M = P.shape
    c = regularizer_centre(regularization)
    G, PtY = P.T @ P, P.T @ Y.double()
    n_rows = N
    if reduce is not None:  # data-parallel: the eigendecomposition of the sums of all the ranks' rows
        N, G, PtY = reduce(N, G, PtY)
    V, w, B, u = loo_eigen(G, PtY, N, M, lams, c)
    sq = loo_squares(P, Y, V, w, B, M, c)
    if reduce is not None:
        _, sq = reduce(n_rows, sq)
    return sq / N, u


def select_ridge(Phi, Y, lams, regularization="biased", reduce=None):
    """The strength of ``lams`` with the smallest leave-one-out error, and its projection (0-dim, (M, n_out)).

    Stays on the device (no host synchronisation). ``reduce``: see :func:`ridge_loo_path`.
    """
    loo, u = ridge_loo_path(Phi, Y, lams, regularization, reduce)
    best = torch.argmin(loo)
    return lams.to(loo)[best], u[best]


def risk_parts(Phi, Y, u, lam, regularization, n_total=None):
    """Data fit ``(1/2N) |F - Y|^2`` and regulariser ``lambda (1/M) sum f(u_i)`` of Eq. III.43, and the residual.

    ``n_total`` replaces ``N`` in the data fit (1: the sum over the rows, as a data-parallel fit reduces it)."""
    N, M = Phi.shape
    r = Phi @ u / M - Y
    datafit = 0.5 * (r * r).sum() / (N if n_total is None else n_total)
    penalty = lam * 0.5 * ((u - regularizer_centre(regularization)) ** 2).sum() / M
    return datafit, penalty, r

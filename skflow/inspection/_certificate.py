"""Convergence certificate (placeholder, being written)."""

__all__ = ["ConvergenceCertificate", "certify"]


class ConvergenceCertificate(dict):
    """Placeholder."""


def certify(estimator, X, y):  # pragma: no cover - placeholder
    raise NotImplementedError

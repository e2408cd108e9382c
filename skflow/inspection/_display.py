"""Displays (placeholder, being written)."""

__all__ = ["ConvergenceDisplay", "FeatureDistributionDisplay", "KernelSpectrumDisplay"]


class ConvergenceDisplay:  # pragma: no cover - placeholder
    pass


class KernelSpectrumDisplay:  # pragma: no cover - placeholder
    pass


class FeatureDistributionDisplay:  # pragma: no cover - placeholder
    pass

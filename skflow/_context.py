"""The fit context: what one fit knows about its data and where it runs, handed to the estimator's hooks.

:class:`skflow._base.BaseFlowEstimator` builds one :class:`FitContext` per ``fit`` and fills it as the fit goes (the
process group first, then the device, dtype and seed, then the tensors); every hook that needs one of these takes
the context as an argument, so that a hook's inputs are in its signature and nothing about a fit travels as a
private attribute of the estimator.
"""

from dataclasses import dataclass

import torch

__all__ = ["FitContext"]


@dataclass
class FitContext:
    """One fit's data and placement.

    Attributes
    ----------
    process_group : skflow.distributed.DataParallel or None
        The handle of a data-parallel fit (every rank fits on its own rows), or None on one process.
    warm : bool
        Whether the fit continues the previous one (``warm_start`` with a fitted model).
    device, dtype : torch.device, torch.dtype
        Where and in which precision the engine trains.
    generator : torch.Generator
        The fit's seeded CPU generator (draw on the CPU, then move to ``device``).
    X, Y : torch.Tensor
        The training inputs and encoded targets of this rank, on ``device`` in ``dtype``.
    X_val, Y_val : torch.Tensor or None
        The held-out rows of early stopping.
    sample_weight, val_weight : torch.Tensor or None
        Per-row weights of the training and held-out rows, normalised to mean 1 over the rows of every rank (None:
        equal weights).
    rows_per_rank : tuple of int or None
        Data-parallel: the training rows of every rank, in rank order.
    """

    process_group: object = None
    warm: bool = False
    device: torch.device = None
    dtype: torch.dtype = None
    generator: torch.Generator = None
    X: torch.Tensor = None
    Y: torch.Tensor = None
    X_val: torch.Tensor = None
    Y_val: torch.Tensor = None
    sample_weight: torch.Tensor = None
    val_weight: torch.Tensor = None
    rows_per_rank: tuple = None

    def positive_rows(self):
        """``(X, Y, w)`` of this rank's training rows of positive weight, with their weights (every row and
        ``w = None`` without sample weights): the rows a diagnostic of the data uses (a row of weight 0 is a row
        the fit does not see), weighted as the fit weighs them."""
        if self.sample_weight is None:
            return self.X, self.Y, None
        keep = self.sample_weight > 0
        return self.X[keep], self.Y[keep], self.sample_weight[keep]

    @property
    def engine_targets(self):
        """The training targets as the engine takes them: ``Y`` with the weights as its last column when the fit is
        weighted (see :attr:`skflow.flows._flow.Flow.weighted`), ``Y`` itself otherwise."""
        if self.sample_weight is None:
            return self.Y
        return torch.cat([self.Y, self.sample_weight[:, None]], dim=1)

    @property
    def n_rows(self):
        """Training rows of every rank (this process's rows outside a data-parallel fit)."""
        if self.rows_per_rank is not None:
            return int(sum(self.rows_per_rank))
        return int(self.X.shape[0])

    @property
    def validation(self):
        """``(X_val, Y_val)`` of early stopping, or None."""
        return None if self.X_val is None else (self.X_val, self.Y_val)

    @property
    def rank(self):
        """This process's rank in a data-parallel fit (0 on one process)."""
        return 0 if self.process_group is None else self.process_group.rank

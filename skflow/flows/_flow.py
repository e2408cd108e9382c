"""The engine protocol shared by every training flow.

An engine ("flow") is a small object holding the particles / parameters of one model as torch tensors,
with no scikit-learn import. The estimators in :mod:`skflow` drive it through four methods:

``parameters()``
    the list of tensors that training updates **in place** (the base snapshots them to restore the last
    finite / best state, so an engine must never rebind them: use ``p.sub_(...)``, ``p.copy_(...)``).
``step(X, Y, lr) -> dict[str, Tensor]``
    evaluate the risk at the current parameters on the batch ``(X, Y)`` and take one explicit step of the
    flow with time step ``lr``. Returns 0-dim tensors, left on the device (no ``.item()``): at least
    ``"risk"`` (the risk *before* the update) and ``"pl_ratio"`` (``||grad R||^2_{L2(mu)} / R`` at the
    same point). Extra keys are recorded by the base as history too.
``risk(X, Y) -> Tensor``
    the training objective at the current parameters, without a step (used for validation).
``forward(X) -> Tensor``
    raw model output, shape ``(n, n_outputs)``.
"""

import copy

import torch


class Flow:
    """Base class for engines: moves the tensors named in ``_tensor_fields`` between devices.

    Subclasses list every tensor attribute in ``_tensor_fields`` and the trained ones in ``_param_fields``.
    """

    _tensor_fields: tuple = ()
    _param_fields: tuple = ()

    def parameters(self):
        return [getattr(self, name) for name in self._param_fields]

    def to(self, device=None, dtype=None):
        """Return a shallow copy whose tensors live on ``device`` (and ``dtype`` if given)."""
        new = copy.copy(self)
        for name in self._tensor_fields:
            t = getattr(self, name)
            if isinstance(t, torch.Tensor):
                kwargs = {"device": device}
                if dtype is not None and t.is_floating_point():
                    kwargs["dtype"] = dtype
                setattr(new, name, t.detach().to(**kwargs).clone())
        return new

    @property
    def device(self):
        return self.parameters()[0].device

    def step(self, X, Y, lr):  # pragma: no cover - interface
        raise NotImplementedError

    def risk(self, X, Y):  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, X):  # pragma: no cover - interface
        raise NotImplementedError

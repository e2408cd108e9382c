"""The engine protocol shared by every training flow.

An engine ("flow") holds the particles / parameters of one model as torch tensors, with no scikit-learn
import, and owns its whole training algorithm. The estimators drive it through these methods only:

``parameters()``
    the list of tensors that training updates **in place** (the fit loop snapshots them to restore the best
    state, so an engine must never rebind them: use ``p.sub_(...)``, ``p.copy_(...)``).
``start(X, Y, validation=None)``
    called once before the first step of a fit (also of a warm-started one), on the training data and the
    held-out ``(X_val, Y_val)`` of early stopping (or None): e.g. VarPro's initial projection and first
    feature snapshot. An engine may use the held-out rows to choose a hyperparameter, never to step.
``step(X, Y, lr) -> dict[str, Tensor]``
    evaluate the risk at the current parameters on the batch ``(X, Y)`` and take one explicit step of the
    flow with time step ``lr``. Returns 0-dim tensors, left on the device (no ``.item()``): at least
    ``"risk"`` (the risk *before* the update) and ``"pl_ratio"`` (``||grad R||^2_{L2(mu)} / R`` at the
    same point). Extra keys are recorded in the history too.
``finish(X, Y, n_steps)``
    called once after the last step (also after an interrupted or diverged fit, with the parameters already
    restored): e.g. VarPro's final re-projection.
``risk(X, Y) -> Tensor``
    the training objective at the current parameters, without a step (used for validation).
``forward(X) -> Tensor``
    raw model output, shape ``(n, n_outputs)``.
``bytes_per_row(training) -> int``
    memory a row of data costs beyond the data itself: during a training step (all activations kept for the
    adjoint pass) or during a forward pass (one layer's activations live at a time).
"""

import copy

import torch


class Flow:
    """Base class for engines: moves the tensors named in ``_tensor_fields`` between devices and dtypes.

    Subclasses list every tensor attribute in ``_tensor_fields`` and the trained ones in ``_param_fields``.
    """

    _tensor_fields: tuple = ()
    _param_fields: tuple = ()

    def parameters(self):
        return [getattr(self, name) for name in self._param_fields]

    def to(self, device=None, dtype=None):
        """Return a copy whose tensors live on ``device`` (and ``dtype`` if given); ``self`` is not changed."""
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
    def itemsize(self):
        return self.parameters()[0].element_size()

    def start(self, X, Y, validation=None):
        """Hook run before the first step of a fit; nothing by default."""

    def finish(self, X, Y, n_steps):
        """Hook run after the last step of a fit; nothing by default."""

    def step(self, X, Y, lr):  # pragma: no cover - interface
        raise NotImplementedError

    def risk(self, X, Y):  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, X):  # pragma: no cover - interface
        raise NotImplementedError

    def bytes_per_row(self, training=True):  # pragma: no cover - interface
        raise NotImplementedError

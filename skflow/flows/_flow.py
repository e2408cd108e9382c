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

#: default bytes of workspace a full-batch step may use beyond the data, by device type: the step runs over
#: blocks of rows that fit and accumulates the gradient. Small on CPUs, where blocks that stay near the caches
#: are also the fastest; large on GPUs, which need big products to be busy.
STEP_WORKSPACE_BYTES = {"cpu": 32 * 2**20, "cuda": 512 * 2**20}


def row_blocks(n, rows):
    """Consecutive slices of ``range(n)`` with at most ``rows`` rows each."""
    rows = max(1, int(rows))
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]


class Flow:
    """Base class for engines: moves the tensors named in ``_tensor_fields`` between devices and dtypes.

    Subclasses list every tensor attribute in ``_tensor_fields`` and the trained ones in ``_param_fields``.
    """

    _tensor_fields: tuple = ()
    _param_fields: tuple = ()
    #: workspace of a step in bytes (None: :data:`STEP_WORKSPACE_BYTES` of the device)
    workspace_bytes = None
    #: whether the fused elementwise kernels run compiled (see :mod:`skflow.flows._fused`)
    compiled = False

    @property
    def activations(self):
        """Names of the fused activation kernels a step uses (see :mod:`skflow.flows._fused`)."""
        return ()

    def elementwise_per_row(self):
        """Entries of pre-activations a step computes per row of data (the work the fused kernels speed up)."""
        return 0

    def block_rows(self, device, training=True):
        """Rows per block of a step (``training``) or a forward pass, from the workspace budget."""
        budget = self.workspace_bytes
        if budget is None:
            budget = STEP_WORKSPACE_BYTES.get(torch.device(device).type, STEP_WORKSPACE_BYTES["cuda"])
        return max(1, int(budget // max(1, self.bytes_per_row(training))))

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

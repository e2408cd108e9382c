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
``data_parallel``
    None, or the handle of a data-parallel fit (:mod:`skflow.distributed`): an engine then computes its
    gradients and risks from this rank's rows as sums over rows and turns them into means over the rows of
    every rank with :meth:`Flow.reduce_rows` (one all-reduce), before anything depends on them.
``weighted``
    False, or True for a fit with sample weights: every ``Y`` an engine receives (in ``start``, ``step``, ``risk``,
    ``finish`` and the held-out rows) then carries the rows' weights as its last column, so that the weights
    follow the rows through every split, shuffle, minibatch and shard. Each row's loss is multiplied by its weight
    (the risk of the weighted empirical measure, ``../SPEC.md`` §5); the estimator normalises the weights to mean
    1 over the rows of each step (:func:`skflow._training.run_epoch`), so that a mean over rows stays a mean.
``bytes_per_row(training) -> int``
    memory a row of data costs beyond the data itself: during a training step (all activations kept for the
    adjoint pass) or during a forward pass (one layer's activations live at a time).

What the engines share lives here, written once: :func:`euler_sweep`, the Euler ResNet of the NODE and RKHS
engines (their training blocks and predictions); :meth:`Flow.sweep_blocks`, the one loop over blocks of rows and
the one compiled-or-eager dispatch: an engine writes its step's sums over a block as one function of tensors, which
runs eagerly and, compiled by :func:`~skflow.flows._fused.graph_kernel`, is the engine's compiled graph; and
:meth:`Flow.reduce_rows`, through which every mean over rows goes (a data-parallel fit all-reduces it).
"""

import copy

import torch

from ._fused import activation_with_bias, graph_kernel, value_with_bias
from ._portable import portable, restored

#: default bytes of workspace a full-batch step may use beyond the data, by device type: the step runs over
#: blocks of rows that fit and accumulates the gradient (the ceiling on a step's memory, whatever N).
STEP_WORKSPACE_BYTES = {"cpu": 16 * 2**20, "cuda": 512 * 2**20}

#: on a CPU, a block also keeps one of its ``rows x width`` matrices (pre-activations, features) near this many
#: bytes, so that a layer's products and elementwise passes run out of the core's L2 cache: measured on a 1 MiB-L2
#: core (``benchmarks/bench_peers.py``), 256 KiB matrices stepped the compiled NODE 10-35 % faster than 1 MiB
#: ones, and faster than 128 KiB ones, whose per-call costs dominate. Engines set :attr:`Flow.block_matrix_bytes`.
#: Eager steps, which pay a Python call per operation and per block, split a batch into cache-sized blocks only
#: when it does not fit one block of the budget anyway: a small batch stays one block (the demo's NODE fit was 8 %
#: slower in cache-sized blocks), a large one gains 10-40 % (NODE 20000 x 128, RKHS 10000 x 256, VarPro 20000 x
#: 512, float32).
CPU_BLOCK_MATRIX_BYTES = 256 * 2**10

#: whether a ``compile=True`` step also builds its depth-generic layer graphs (:meth:`Flow.layer_kernels`): set by
#: :func:`skflow.precompile.precompile`, so that a machine it prepared runs every depth compiled
BUILD_LAYER_GRAPHS = {"enabled": False}

#: fewest rows a cache-sized block may have (below it, the products' per-call cost dominates)
MIN_CACHE_BLOCK_ROWS = 64


def row_blocks(n, rows):
    """Consecutive slices of ``range(n)`` with at most ``rows`` rows each."""
    rows = max(1, int(rows))
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]


def euler_sweep(zT, layers, activation, *, keep=False, compiled=False, workspace=None):
    """The Euler ResNet ``z_{k+1} = z_k + alpha_k V_k sigma(W_k z_k + b_k)`` on transposed states: the one forward
    sweep of the NODE and RKHS engines (their training blocks and their predictions).

    ``zT`` (dim, n) is the state ``z_0^T``; ``layers`` a sequence of ``(W_k (M, dim), b_k (M,), V_k (dim, M),
    alpha_k)``. Returns ``(z_S^T, states, acts)``: with ``keep`` the states ``z_k^T`` and the pairs
    ``(sigma(a_k), sigma'(a_k))`` of every layer, kept for an adjoint pass (empty lists otherwise). Without
    ``keep`` only ``sigma`` is evaluated (the fused kernel when ``compiled``); ``workspace = (A (n, M), Z (dim, n))``
    makes a no-grad sweep write into those buffers (the result may be either ``Z`` or ``zT``).
    """
    states, acts = [], []
    for W, b, V, alpha in layers:
        if keep:
            s, ds = activation_with_bias(activation, torch.mm(zT.T, W.T), b)
            states.append(zT)
            acts.append((s, ds))
        elif workspace is None:
            s = value_with_bias(activation, torch.mm(zT.T, W.T), b, compiled)
        else:  # no autograd: out= products into buffers allocated once
            A, nxt = workspace
            s = value_with_bias(activation, torch.mm(zT.T, W.T, out=A), b, compiled)
            torch.addmm(zT, V, s.T, alpha=alpha, out=nxt)
            zT, workspace = nxt, (A, zT)
            continue
        zT = torch.addmm(zT, V, s.T, alpha=alpha)
    return zT, states, acts


def layer_forward(zT, W, b, V, *, activation):
    """One Euler layer on transposed states, ``z_{k+1}^T = z_k^T + V sigma(W z_k^T + b)``: returns
    ``(z_{k+1}^T, sigma(a_k), sigma'(a_k))``, as :func:`euler_sweep` computes them. A depth-generic graph of the
    NODE and RKHS training blocks: any number of layers runs it once per layer."""
    s, ds = activation_with_bias(activation, torch.mm(zT.T, W.T), b)
    return torch.addmm(zT, V, s.T), s, ds


#: the sizes a compiled :func:`layer_forward` leaves symbolic: rows, width and state dimension
layer_forward.symbolic_dims = (("D", "rows"), ("M", "D"), ("M",), ("D", "M"))


def layer_forward_kernel(activation):
    """The :class:`~skflow.flows._fused.GraphKernel` of :func:`layer_forward` with ``activation``."""
    return graph_kernel(("layer_forward", activation), lambda: lambda *t: layer_forward(*t, activation=activation),
                        layer_forward, {"activation": activation})


def euler_forward(X, dim, layers, activation, rows, compiled=False):
    """Final state ``z(1)`` (N, dim) of :func:`euler_sweep` from ``z_0 = (x, 0)``, over blocks of ``rows`` rows,
    in workspaces allocated once.

    States are kept transposed (dim, n) so that every product has the layout BLAS runs fastest; nothing of size
    N x M is ever allocated, and reusing the same buffers block after block keeps the allocator from growing the
    heap.
    """
    N = X.shape[0]
    M = layers[0][0].shape[0]
    rows = max(1, min(N, int(rows)))
    differentiable = torch.is_grad_enabled() and any(t.requires_grad for layer in layers for t in layer[:3])
    parts = []
    result = X.new_empty((N, dim))
    A = X.new_empty((rows, M))
    Z = X.new_empty((2, dim, rows))
    for block in row_blocks(N, rows):
        n = block.stop - block.start
        zT = Z[0, :, :n]
        zT.zero_()
        zT[: X.shape[1]] = X[block].T
        # autograd records no out= products: a differentiable sweep allocates
        workspace = None if differentiable else (A[:n], Z[1, :, :n])
        zT, _, _ = euler_sweep(zT, layers, activation, compiled=compiled, workspace=workspace)
        if differentiable:
            parts.append(zT.T)
        else:
            result[block] = zT.T
    return torch.cat(parts) if differentiable else result


class _LayerGraphFailed(Exception):
    """A layer graph of the depth-generic tier failed to run: the sweep runs eagerly."""


def _graph_of(block, constants):
    """``block`` with its keyword constants bound, as a function of tensors only (for :func:`graph_kernel`)."""

    def graph(*tensors):
        return block(*tensors, **constants)

    return graph


class Flow:
    """Base class for engines: moves the tensors named in ``_tensor_fields`` between devices and dtypes.

    Subclasses list every tensor attribute in ``_tensor_fields`` and the trained ones in ``_param_fields``.
    """

    _tensor_fields: tuple = ()
    _param_fields: tuple = ()
    #: workspace of a step in bytes (None: :data:`STEP_WORKSPACE_BYTES` of the device)
    workspace_bytes = None
    #: whether a full-batch step runs over blocks of :meth:`block_rows` rows (its memory then does not grow with N)
    row_blocked = False
    #: whether the compiled kernels run (see :mod:`skflow.flows._fused`): True, False, or ``'auto'`` (those
    #: already built; the training graph as soon as its package is on disk)
    compiled = False
    #: whether the last step ran the compiled training graph
    graph_live = False
    #: which compiled graphs the last step ran: ``'shape'`` (the block's own graph, its depth unrolled),
    #: ``'layers'`` (the depth-generic layer graphs, :meth:`layer_kernels`, for at least one block), or None (eager)
    graph_tier = None
    #: a :class:`skflow.distributed.DataParallel` handle, set by the estimator for the duration of a data-parallel
    #: fit (None otherwise): the sums over rows of the gradients and risks are then all-reduced over the ranks
    #: (:meth:`reduce_rows`), so that every rank steps with the gradient of the rows of all the ranks.
    data_parallel = None
    #: whether the last column of every ``Y`` holds the rows' sample weights (see the module documentation)
    weighted = False
    #: whether the engine reduces its gradients, risks and any other sum over rows through :attr:`data_parallel`
    #: (an estimator refuses a data-parallel fit with an engine that does not)
    supports_data_parallel = False

    def reduce_rows(self, n_rows, *sums):
        """Means over the rows of every rank, from this rank's sums over its ``n_rows`` rows.

        Returns ``sums / N`` with ``N`` the rows of all the ranks: one all-reduce of the sums and the count
        when :attr:`data_parallel` is set, ``sums / n_rows`` otherwise. A rank with no rows contributes zeros.
        """
        if self.data_parallel is None:
            return tuple(s / n_rows for s in sums)
        count, *totals = self.sum_rows(n_rows, *sums)
        return tuple(t / count for t in totals)

    def sum_rows(self, n_rows, *sums):
        """``(N, *totals)``: the rows of all the ranks and the sums over them of this rank's sums ``sums`` over
        its ``n_rows`` rows (one all-reduce; ``N`` a 0-dim tensor), or ``(n_rows, *sums)`` outside a
        data-parallel fit. The hook that functions of an engine take as ``reduce``."""
        if self.data_parallel is None:
            return (n_rows, *sums)
        count = sums[0].new_tensor(float(n_rows)).reshape(1)
        *totals, count = self.data_parallel.all_reduce_sum(*sums, count)
        return (count[0], *totals)

    @staticmethod
    def block_kernel(block, key, constants, means=True):
        """The compiled graph of the block function ``block`` of :meth:`sweep_blocks`
        (:func:`~skflow.flows._fused.graph_kernel`): its keyword ``constants`` bound, and with ``means``
        ``n_total=1`` (sums over rows, normalised after the sweep). ``key`` names everything the graph specialises
        on (the constants included)."""
        bound = {**constants, "n_total": 1} if means else constants
        return graph_kernel(key, lambda: _graph_of(block, bound), block, bound)

    def sweep_blocks(self, block, key, constants, n_rows, blocks, block_args, totals, means=True, reuse=None):
        """Run one step's block function over blocks of rows, compiled or eager: the engines' one dispatch.

        ``block(*block_args(rows, compiled), *totals, **constants, n_total=n)`` returns the tensors ``totals`` plus
        the terms of the rows ``rows`` (their sums over rows divided by ``n``): a function of tensors, which runs
        eagerly and, when :attr:`compiled`, as one graph per block (:meth:`block_kernel`, with ``n = 1``). A graph
        that cannot be built, or with ``compiled='auto'`` is not built yet, leaves the sweep to run eagerly, with
        the eager results exactly; with ``compiled='auto'`` a block whose graph is not on disk runs the engine's
        depth-generic layer graphs instead where they are (:meth:`layer_kernels`; :attr:`graph_tier` says which
        ran). The first two tensors of ``block_args`` carry the rows (the block function's ``symbolic_dims`` name
        the sizes a compiled graph leaves symbolic, see :mod:`skflow.flows._aot`).

        Returns the means over the rows of every rank (:meth:`reduce_rows`; eagerly outside a data-parallel fit
        the block divides by ``n = n_rows`` itself), or with ``means=False`` (``block`` then takes no
        ``n_total``) the sums over this rank's ``n_rows`` rows. ``reuse``: keyword tensors for the eager block of
        a single-block sweep (e.g. features already computed).
        """
        summed = False  # whether the totals hold sums over rows (not yet divided by n_rows)
        if self.compiled:
            kernel = self.block_kernel(block, key, constants, means)
            bound = {**constants, "n_total": 1} if means else constants
            sums, tiers, out = totals, set(), None
            for rows in blocks:
                args = block_args(rows, True)
                layers = (lambda a=args: self.layer_kernels(a)) if self.compiled == "auto" else None
                if self.compiled is True and BUILD_LAYER_GRAPHS["enabled"]:  # skflow.precompile: the generic tier too
                    self._build_layer_graphs(args)
                out = kernel(*args, *sums, compiled=self.compiled, fallback=False, also=layers)
                tier = "shape"
                if out is None and layers is not None:  # the depth-generic tier, where its packages are on disk
                    out, tier = self._layered(block, args, sums, bound), "layers"
                tiers.add(tier)
                if out is None:  # no compiler, or not built yet: the eager sweep below, from the start
                    break
                sums = out
            self.graph_live = out is not None
            self.graph_tier = ("layers" if "layers" in tiers else "shape") if self.graph_live else None
            if self.graph_live:
                summed, totals = True, sums
        if not summed:
            if means:
                summed = self.data_parallel is not None
                constants = {**constants, "n_total": 1 if summed else n_rows}
            if reuse is not None and len(blocks) == 1:
                constants = {**constants, **reuse}
            for rows in blocks:
                totals = block(*block_args(rows, False), *totals, **constants)
        if means and summed:
            return self.reduce_rows(n_rows, *totals)
        return tuple(totals)

    def layer_kernels(self, block_args):
        """The depth-generic tier of a training block: pairs ``(GraphKernel, example arguments)`` of graphs that the
        block function runs layer by layer (its ``layer_graphs`` argument), whatever the depth; none by default.
        Under ``compiled='auto'`` a block whose own graph is not on disk runs them when their packages are, and
        the background build of its graph makes their packages next."""
        return []

    def _build_layer_graphs(self, args):
        """Build (in this process) the packages of :meth:`layer_kernels` that are not on disk, without running
        them; a graph that cannot be built is marked failed (its fits then run the other tiers)."""
        for layer, example in self.layer_kernels(args):
            if not layer._failed and layer.aot.runner(example) is None:
                try:
                    layer.aot.build(example)
                except Exception as exc:  # noqa: BLE001 - no compiler: the fits stay on the other tiers
                    layer._fail(exc)

    def _layered(self, block, args, sums, constants):
        """The block through its depth-generic layer graphs (:meth:`layer_kernels`), or None when they are not all
        on disk or one of them fails (the sweep then runs eagerly)."""
        pairs = self.layer_kernels(args)
        if not pairs or not all(kernel.ready(example) for kernel, example in pairs):
            return None

        def strict(kernel):
            def run(*tensors):
                out = kernel(*tensors, compiled="auto", fallback=False)
                if out is None:
                    raise _LayerGraphFailed
                return out
            return run

        try:
            return block(*args, *sums, **constants, layer_graphs=tuple(strict(k) for k, _ in pairs))
        except _LayerGraphFailed:
            return None

    @property
    def activations(self):
        """Names of the fused activation kernels a step uses (see :mod:`skflow.flows._fused`)."""
        return ()

    def compile_kernels(self):
        """What a fit compiles when :attr:`compiled` is set: :class:`~skflow.flows._fused.FusedKernel` objects,
        or activation names for their elementwise kernels (``compile='auto'`` compiles for free when every one
        is already built)."""
        return self.activations

    def elementwise_per_row(self):
        """Entries of pre-activations a step computes per row of data (the work the fused kernels speed up)."""
        return 0

    #: bytes of one ``rows x block_width()`` matrix that a CPU block aims at (see :data:`CPU_BLOCK_MATRIX_BYTES`)
    block_matrix_bytes = CPU_BLOCK_MATRIX_BYTES

    def block_width(self):
        """Columns of the widest per-row matrix of a step (the hidden width), or None: no cache-sized blocks."""
        return None

    def block_rows(self, device, training=True, n=None):
        """Rows per block of a step (``training``) or a forward pass over ``n`` rows: what the workspace budget
        allows and, on a CPU with the default budget, at most a cache-sized block (:data:`CPU_BLOCK_MATRIX_BYTES`)
        for a compiled step, or for an eager one whose ``n`` rows exceed one block of the budget."""
        budget = self.workspace_bytes
        device_type = torch.device(device).type
        rows = int(STEP_WORKSPACE_BYTES.get(device_type, STEP_WORKSPACE_BYTES["cuda"]) if budget is None else budget)
        rows = max(1, rows // max(1, self.bytes_per_row(training)))
        width = self.block_width()
        split = self.compiled is True or self.graph_live or (n is not None and n > rows)
        if budget is None and device_type == "cpu" and width and split:
            rows = min(rows, max(MIN_CACHE_BLOCK_ROWS, self.block_matrix_bytes // (width * self.itemsize)))
        return rows

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        """The engine's attributes with its torch objects made portable (:func:`skflow.flows._portable.portable`):
        tensors as NumPy arrays and dtype names on the CPU, modules wrapped, so that pickle, joblib and skops
        store no torch object."""
        return {k: portable(v) for k, v in self.__dict__.items()}

    def __setstate__(self, state):
        """Rebuild the attributes stored by :meth:`__getstate__`, on the CPU (the estimator moves its engine to
        its ``device_``)."""
        self.__dict__.update({k: restored(v) for k, v in state.items()})

    def __copy__(self):
        # copy.copy (used by :meth:`to`) is not a round trip through the CPU: the same tensors, a new dict
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo):
        # copy.deepcopy keeps the tensors on their device (no round trip through the pickled state)
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

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

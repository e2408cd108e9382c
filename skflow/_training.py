"""The fit loop of an explicit gradient flow, in named pieces.

* :class:`History` -- per-iteration records kept on the device and brought to the host every few iterations;
* :class:`BestParameters` -- a device copy of the parameters at the lowest value of a monitored risk;
* :class:`StopMonitor` -- the stopping rules: ``tol`` / ``n_iter_no_change``, and divergence;
* :func:`epoch_batches` -- an epoch's shuffled minibatches, of nearly equal sizes;
* :func:`run_epoch` -- one iteration: a full-batch step, or one pass over shuffled minibatches;
* :func:`train` -- the loop that ties them together and returns a :class:`TrainResult`;
* :func:`warn_stop` -- the warning that explains a stop reason.

Nothing here knows about scikit-learn estimators: :mod:`skflow._base` calls :func:`train` with a
:class:`TrainConfig` and turns the result into fitted attributes.
"""

import copy
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from .exceptions import DivergenceWarning, FitInterruptedWarning, warn

__all__ = ["BestParameters", "History", "StopMonitor", "TrainConfig", "TrainResult", "epoch_batches", "n_batches",
           "normalise_weights", "run_epoch", "stable_time_step", "train", "warn_stop", "weighted_batches"]

#: a training risk above this multiple of the fit's first risk is divergence, even while it is finite
DIVERGENCE_FACTOR = 1e4


@dataclass
class TrainConfig:
    """What the loop needs from the estimator's parameters."""

    max_iter: int
    tol: float
    n_iter_no_change: int
    batch_size: object = None
    learning_rate_at: object = None  # callable: iteration -> time step
    sync_every: int = 20
    verbose: int = 0
    name: str = "estimator"
    #: data-parallel fits: the training rows of every rank, in rank order (None: a single process)
    rows_per_rank: tuple = None
    #: early stopping of a classifier: ``(flow, X_val, Y_val) -> (score, risk)``, 0-dim tensors: a validation
    #: score (higher is better: the accuracy) that chooses the restored parameters, ties broken by the validation
    #: risk, returned with it so that both come from one pass; None: the validation risk alone
    val_score: object = None
    #: ``(iteration, row) -> bool``, called after every iteration (``row``: its host record, a dict of floats,
    #: when :attr:`hook_needs_rows`, else None); True stops the fit (``stop_reason`` ``'monitor'``)
    iteration_hook: object = None
    hook_needs_rows: bool = False
    #: whether the end of the fit is checked against its start (:func:`_conclude`); off for the single epochs of
    #: ``partial_fit``, whose chunk's risk may rise for one epoch of noisy steps without the stream's failing
    check_improvement: bool = True


@dataclass
class TrainResult:
    """What the loop returns: the host history, why it stopped, and the best validation risk."""

    history: dict
    stop_reason: str
    n_iter: int
    n_batches: int
    best_validation_risk: float = float("nan")
    best_validation_score: float = float("nan")
    restored: str = ""
    extra: dict = field(default_factory=dict)


class History:
    """Per-iteration records: dicts of 0-dim device tensors, synchronised to host lists in batches."""

    def __init__(self, previous=None):
        self.host = {k: list(v) for k, v in (previous or {}).items()}
        self.pending = []

    def append(self, record):
        self.pending.append(record)

    def take_pending(self):
        """Bring the pending records to the host; returns them as a list of dicts of floats."""
        if not self.pending:
            return []
        keys = self.pending[0].keys()
        stacked = {k: torch.stack([r[k] for r in self.pending]).double().cpu().numpy() for k in keys}
        count = len(self.pending)
        self.pending = []
        return [{k: float(stacked[k][j]) for k in keys} for j in range(count)]

    def keep(self, row):
        for k, v in row.items():
            self.host.setdefault(k, []).append(v)

    def __len__(self):
        return len(self.host.get("risk", []))

    def arrays(self):
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.host.items()}


class BestParameters:
    """A device copy of the parameters at the lowest monitored value seen, updated without a host sync."""

    def __init__(self, params, like):
        self.params = [p.detach().clone() for p in params]
        self.value = torch.tensor(float("inf"), dtype=like.dtype, device=like.device)

    def update(self, value, params):
        """Keep ``params`` if ``value`` is below the best so far (a NaN never is)."""
        better = value < self.value
        self.value = torch.where(better, value, self.value)
        for p, b in zip(params, self.params):
            torch.where(better, p, b, out=b)

    def restore(self, params):
        for p, b in zip(params, self.params):
            p.copy_(b)


class StopMonitor:
    """Stopping rules, applied to host rows: divergence first, then ``tol`` / ``n_iter_no_change``.

    Divergence is a non-finite training risk, or one above :data:`DIVERGENCE_FACTOR` times the first risk of
    this fit (a finite but exploding risk, e.g. logits that overflow the loss's useful range).
    """

    def __init__(self, tol, n_iter_no_change, monitor_key, previous=(), initial_risk=None):
        self.tol, self.n_iter_no_change, self.key = tol, n_iter_no_change, monitor_key
        self.best = float(np.nanmin(previous)) if len(previous) else math.inf
        self.no_improve = 0
        self.first_risk = initial_risk if initial_risk is not None and math.isfinite(initial_risk) else None

    def update(self, row):
        """Return ``'diverged'``, ``'converged'`` or ``None`` for one iteration's row."""
        risk = row["risk"]
        if self.first_risk is None and math.isfinite(risk):
            self.first_risk = risk
        if not math.isfinite(risk) or (self.first_risk and risk > DIVERGENCE_FACTOR * self.first_risk):
            return "diverged"
        monitor = row[self.key]
        if self.tol > 0:
            self.no_improve = self.no_improve + 1 if monitor > self.best - self.tol * abs(self.best) else 0
        self.best = min(self.best, monitor)
        if self.tol > 0 and self.no_improve >= self.n_iter_no_change:
            return "converged"
        return None


def n_batches(n, batch, rows_per_rank=None):
    """Minibatches per epoch: ``ceil(n / batch)``; data-parallel, ``ceil(max rows of a rank / batch)`` on every rank.

    Every rank must take the same number of steps (each step is a collective), so in a data-parallel fit each
    rank splits its rows into that many nearly equal batches (a rank with fewer rows takes smaller ones); a
    step's gradient is then the mean over the union of the ranks' batches.
    """
    if batch is None:
        return 1
    most = n if rows_per_rank is None else max(rows_per_rank)
    return max(1, math.ceil(most / batch))


def _split_sizes(n, k):
    """Sizes of ``torch.tensor_split`` of ``n`` items into ``k`` parts."""
    return [n // k + (j < n % k) for j in range(k)]


def epoch_batches(n, batch, generator, device, rows_per_rank=None):
    """Index tensors of one epoch's minibatches: a shuffled permutation of ``range(n)`` cut into
    :func:`n_batches` parts of nearly equal sizes (they differ by at most one row), with their shares of the
    epoch's rows (of every rank's rows in a data-parallel fit).

    Why nearly equal batches rather than ``batch``-sized ones and a remainder: every step of an epoch has the
    same time step ``tau``, and the stiffness of a minibatch step grows as the batch shrinks (its gradient is
    the mean over fewer rows, its noise larger), so a step sized for ``batch`` rows must never be taken on a
    batch of ``N mod batch`` rows (one row, for ``N = k * batch + 1``). With ``ceil(N / batch)`` near-equal
    parts every batch has between ``batch / 2`` and ``batch`` rows, and the flow at ``N = k * batch + 1`` is
    the flow at ``k * batch`` (the same number of steps of nearly the same size).
    """
    rows = (n,) if rows_per_rank is None else tuple(rows_per_rank)
    k = n_batches(n, batch, rows_per_rank)
    perm = torch.randperm(n, generator=generator).to(device)
    # every rank knows the batch sizes of all the ranks from their row counts: the same shares everywhere
    sizes = np.sum([_split_sizes(r, k) for r in rows], axis=0)
    return list(torch.tensor_split(perm, k)), sizes / float(sum(rows))


def normalise_weights(Y, count=None, total=None):
    """``Y`` whose last column (the rows' sample weights) is rescaled to mean 1 over ``count`` rows of total weight
    ``total`` (by default those of ``Y`` itself): the weighted mean of a batch's losses is then the plain mean an
    engine computes (``../SPEC.md`` §5: a weighted batch risk, normalised by the batch's weight). A batch of total
    weight 0 keeps weights 0."""
    w = Y[:, -1]
    count = Y.shape[0] if count is None else count
    total = w.sum() if total is None else total
    scale = torch.where(total > 0, count / torch.where(total > 0, total, torch.ones_like(total)),
                        torch.zeros_like(total))
    return torch.cat([Y[:, :-1], (w * scale)[:, None]], dim=1)


def weighted_batches(Y, parts, flow):
    """Minibatch weights of a weighted fit: ``(totals, counts)``, each batch's total weight and its rows over every
    rank (one all-reduce of the ``k`` totals in a data-parallel fit)."""
    totals = torch.stack([Y[idx, -1].sum() for idx in parts])
    counts = torch.tensor([float(idx.shape[0]) for idx in parts], dtype=Y.dtype, device=Y.device)
    if flow.data_parallel is not None:
        totals, counts = flow.data_parallel.all_reduce_sum(totals, counts)
    return totals, counts


def run_epoch(flow, X, Y, lr, batch, generator, rows_per_rank=None):
    """One iteration: a full-batch step, or a pass over the shuffled near-equal minibatches of
    :func:`epoch_batches` (``ceil(N / batch)`` of them).

    Returns the step's record; for minibatches, the epoch averages of the batches' records weighted by their
    shares of the rows (the ``"risk"`` entry is then the epoch's mean training risk, each batch's taken before
    its step). Data-parallel (``rows_per_rank``, the rows of every rank): every rank takes the same number of
    steps (see :func:`n_batches`) and the records are already means over the ranks.

    With sample weights (``flow.weighted``: the last column of ``Y``), each batch's weights are rescaled to mean 1
    over the batch (:func:`normalise_weights`), so that its step follows the weighted batch risk normalised by the
    batch's weight, and the records are averaged with the batches' shares of the total weight; a batch of total
    weight 0 takes no step.
    """
    n = X.shape[0]
    if batch is None or n_batches(n, batch, rows_per_rank) == 1:
        return dict(flow.step(X, Y, lr))
    parts, shares = epoch_batches(n, batch, generator, X.device, rows_per_rank)
    if not flow.weighted:
        records = [flow.step(X[idx], Y[idx], lr) for idx in parts]
        w = torch.tensor(shares, dtype=X.dtype, device=X.device)
    else:
        totals, counts = weighted_batches(Y, parts, flow)
        keep = torch.nonzero(totals > 0).flatten().tolist()  # one host read per epoch
        records = [flow.step(X[parts[j]], normalise_weights(Y[parts[j]], counts[j], totals[j]), lr) for j in keep]
        w = totals[keep] / totals.sum()
    return {key: (torch.stack([r[key] for r in records]) * w).sum() for key in records[0]}


def _decreases(flow, batches, tau, n_cycles):
    """Whether explicit steps of size ``tau`` on a copy of the engine keep decreasing the risk.

    ``batches``: the ``(X, Y)`` minibatches the fit takes, in order (one pair for full batch). Full batch: the
    objective the flow descends (the reduced risk for VarPro, the risk otherwise) decreases at each of
    ``n_cycles`` steps. Minibatches: the probe passes through the batches ``n_cycles`` times, one step per
    batch as the fit does (momentum included), and the risk on the union of the batches is finite and
    decreases from each pass to the next.
    """
    probe = copy.deepcopy(flow)
    with torch.no_grad():
        if len(batches) == 1:
            X, Y = batches[0]
            records = [probe.step(X, Y, tau) for _ in range(n_cycles + 1)]
            risks = [float(r.get("reduced_risk", r["risk"])) for r in records]
        else:
            Xu, Yu = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
            risks = [float(probe.risk(Xu, Yu))]
            for _ in range(n_cycles):
                for Xb, Yb in batches:
                    probe.step(Xb, Yb, tau)
                risks.append(float(probe.risk(Xu, Yu)))
    return all(math.isfinite(r) for r in risks) and all(b < a for a, b in zip(risks, risks[1:]))


def stable_time_step(flow, X, Y, reference, fraction=0.5, factor=2.0, n_steps=3, max_up=8, max_down=24,
                     batches=None):
    """The largest time step of the grid ``reference * factor**k`` whose first explicit steps keep decreasing the
    risk, times ``fraction``.

    A safeguarded line search on the first steps: the explicit Euler scheme of a gradient flow is stable for
    ``tau < 2 / L`` (``L`` the smoothness of the risk), and a step beyond the limit makes the risk oscillate or
    grow. Each probe runs on a copy of the engine, so the engine itself is not moved. ``X``, ``Y`` are the rows
    of a full-batch step; ``batches`` (a list of ``(X, Y)``), the minibatches the fit will take, in order: the
    probe then steps through them as the fit does, momentum included, and judges the risk on their union
    after each pass (see :func:`_decreases`). The search goes at most ``factor**max_up`` above the reference
    and ``factor**max_down`` below it.
    """
    batches = [(X, Y)] if batches is None else list(batches)
    tau = float(reference)
    if _decreases(flow, batches, tau, n_steps):
        for _ in range(max_up):
            if not _decreases(flow, batches, tau * factor, n_steps):
                break
            tau *= factor
    else:
        for _ in range(max_down):
            tau /= factor
            if _decreases(flow, batches, tau, n_steps):
                break
    return fraction * tau


def _log(name, host, t0, final=False, reason=None):
    risks = host.get("risk", [])
    if not risks and not final:
        return
    msg = f"[{name}] iter {len(risks):6d}"
    if risks:
        msg += f"  risk {risks[-1]:.4e}"
    if "pl_ratio" in host and host["pl_ratio"]:
        msg += f"  P-L ratio {host['pl_ratio'][-1]:.3e}"
    if "val_risk" in host and host["val_risk"]:
        msg += f"  val risk {host['val_risk'][-1]:.4e}"
    if "val_score" in host and host["val_score"]:
        msg += f"  val score {host['val_score'][-1]:.4f}"
    msg += f"  {time.perf_counter() - t0:7.1f}s"
    if final:
        msg += f"  (done) stop reason {reason!r}"
    print(msg, file=sys.stdout, flush=True)


def _sync(history, monitor):
    """Move pending records to the host through the monitor; returns a stop reason or None.

    Every record of a complete iteration is kept when the ``tol`` rule fires inside the block, so that the
    history, ``n_iter_`` and the best-validation snapshot (taken on the device at every iteration) agree; a
    divergent record and those after it are dropped.
    """
    reason = None
    for row in history.take_pending():
        verdict = monitor.update(row)
        if verdict == "diverged":
            return verdict
        history.keep(row)
        reason = reason or verdict
    return reason


def train(flow, data, cfg, generator, previous_history=None, start_iter=0):
    """Run the flow from its current parameters; ``data = (X, Y, X_val, Y_val)`` (validation may be None).

    The parameters end at: the best validation risk (early stopping), the lowest training risk (divergence),
    the start of the interrupted iteration (Ctrl-C during a step), or the last step. Whatever the stop, the
    training risk on all the rows is then measured once more: a fit that ends no lower than it started (see
    :func:`_conclude`) restores the best of its candidate parameters and says so (``stop_reason``
    ``'no_improvement'``).

    With ``verbose``, a minibatch fit prints a line per epoch, a full-batch fit every ``5 * sync_every``
    iterations (every ``sync_every`` with ``verbose >= 2``), and every fit ends with a line giving its stop
    reason.
    """
    X, Y, Xv, Yv = data
    params = flow.parameters()
    use_val = Xv is not None
    history = History(previous_history)
    with torch.no_grad():  # the reference of the divergence rule: the risk before the first step
        initial_risk = float(flow.risk(X, Y))
    monitor = StopMonitor(cfg.tol, cfg.n_iter_no_change, "val_risk" if use_val else "risk",
                          history.host.get("val_risk" if use_val else "risk", ()), initial_risk)
    lowest = BestParameters(params, X)
    best_val = BestParameters(params, X) if use_val else None

    def validate():
        """``(risk, score, key)`` on the held-out rows; ``best_val`` keeps the parameters of the least key."""
        if cfg.val_score is None:
            risk = flow.risk(Xv, Yv)
            return risk, None, risk
        score, risk = cfg.val_score(flow, Xv, Yv)
        # the best score; among equal scores (an accuracy moves in steps of 1 / n_val) the least risk
        return risk, score, risk.clamp(max=100.0) / (1e3 * max(1, Xv.shape[0])) - score

    if use_val:  # the starting point is a candidate too: a first step that diverges must not be kept
        with torch.no_grad():
            best_val.update(validate()[2], params)
    initial = [p.detach().clone() for p in params]
    start = [p.detach().clone() for p in params]
    n = X.shape[0]
    batch = n if cfg.batch_size is None else min(cfg.batch_size, n)
    if cfg.rows_per_rank is not None:
        batch = cfg.batch_size
    minibatch = n_batches(n, batch, cfg.rows_per_rank) > 1
    hook = cfg.iteration_hook
    # a per-iteration record on the host costs a synchronisation per iteration: only when a hook reads it
    sync_every = 1 if ((cfg.verbose and minibatch) or (hook is not None and cfg.hook_needs_rows)) else cfg.sync_every
    log_every = (1 if minibatch else cfg.sync_every if cfg.verbose >= 2 else 5 * cfg.sync_every) if cfg.verbose else 0
    reason, stepping, t0 = "max_iter", False, time.perf_counter()
    try:
        for it in range(start_iter, start_iter + cfg.max_iter):
            for p, s in zip(params, start):
                s.copy_(p)
            stepping = True
            rec = run_epoch(flow, X, Y, float(cfg.learning_rate_at(it)), batch, generator, cfg.rows_per_rank)
            stepping = False
            lowest.update(rec["risk"], start)
            if use_val:
                rec["val_risk"], score, key = validate()
                if score is not None:
                    rec["val_score"] = score
                best_val.update(key, params)
            history.append(rec)
            done = it + 1 - start_iter
            if done % sync_every == 0 or done == cfg.max_iter:
                stop = _sync(history, monitor)
                if log_every and stop is None and done % log_every == 0:
                    _log(cfg.name, history.host, t0)
                if stop is not None:
                    reason = stop
                    break
            if hook is not None:
                row = {k: v[-1] for k, v in history.host.items() if v} if cfg.hook_needs_rows else None
                if hook(it, row):
                    _sync(history, monitor)  # the records of the iterations done are kept
                    reason = "monitor"
                    break
    except KeyboardInterrupt:
        reason = "interrupted"
        if stepping:  # a step was cut in the middle: go back to the last complete iteration
            for p, s in zip(params, start):
                p.copy_(s)
        for row in history.take_pending():  # every pending record is of a complete iteration
            history.keep(row)
    result = _conclude(flow, params, history, reason, lowest, best_val, cfg, n_batches(n, batch, cfg.rows_per_rank),
                       t0, log_every, (X, Y), initial, initial_risk, warm=start_iter > 0)
    if use_val and result.n_iter:  # of the parameters kept
        with torch.no_grad():
            risk, score, _ = validate()
        result.best_validation_risk = float(risk)
        result.best_validation_score = float("nan") if score is None else float(score)
    return result


def _conclude(flow, params, history, reason, lowest, best_val, cfg, n_batches, t0, log_every, train_rows, initial,
              initial_risk, warm=False):
    """Restore the parameters a stop calls for, then check the fit against its start.

    The check is on the training risk of all the rows (an epoch-level quantity, not one batch's): a cold fit
    whose final risk is not below the risk it started from (a warm start: above it) failed, whatever its stop
    reason but divergence (whose rule has already restored the lowest risk). The parameters then become the
    best of three candidates by that risk -- the final ones, those of the lowest epoch risk seen, and the
    starting ones -- and the reason becomes ``'no_improvement'`` (the warning, :func:`warn_stop`, names the
    fix). An interrupted fit is left as the user stopped it.
    """
    restored = ""
    n_done = len(history)
    if reason == "diverged":
        (best_val or lowest).restore(params)
        restored = "the parameters with the lowest " + ("validation" if best_val else "training") + " risk"
    elif best_val is not None and n_done > 0:
        best_val.restore(params)
    extra = {"initial_risk": initial_risk}
    X, Y = train_rows
    # a diverged fit has restored its lowest risk and says so already; an interrupted one is left as it was stopped
    if (cfg.check_improvement and reason not in ("interrupted", "diverged") and n_done > 0
            and math.isfinite(initial_risk) and initial_risk > 0):
        with torch.no_grad():
            final = float(flow.risk(X, Y))
            failed = not (final <= initial_risk) if warm else not (final < initial_risk)
            if failed:
                kept = [p.detach().clone() for p in params]
                candidates = [("final", kept), ("lowest", lowest.params), ("initial", initial)]
                scored = []
                for label, values in candidates:
                    for p, v in zip(params, values):
                        p.copy_(v)
                    r = float(flow.risk(X, Y))
                    scored.append((r if math.isfinite(r) else math.inf, label, values))
                best_risk, label, values = min(scored, key=lambda t: t[0])
                for p, v in zip(params, values):
                    p.copy_(v)
                restored = {"final": "the final parameters (no better ones were seen)",
                            "lowest": "the parameters of the epoch with the lowest training risk",
                            "initial": "the starting parameters"}[label]
                extra.update(final_risk=final, restored_risk=best_risk, failed_reason=reason)
                reason = "no_improvement"
                final = best_risk
        extra["final_risk"] = extra.get("final_risk", final)
    elif reason not in ("interrupted", "diverged") and n_done > 0 and math.isfinite(initial_risk):
        # partial_fit: no improvement is asked of one epoch, but a last step that exploded is divergence
        with torch.no_grad():
            final = float(flow.risk(X, Y))
        if not (math.isfinite(final) and final <= DIVERGENCE_FACTOR * max(initial_risk, 1e-300)):
            for p, v in zip(params, initial):
                p.copy_(v)
            reason, restored = "diverged", "the parameters of the start of this call"
    if log_every:
        _log(cfg.name, history.host, t0, final=True, reason=reason)
    return TrainResult(
        history=history.arrays(), stop_reason=reason, n_iter=n_done, n_batches=n_batches,
        best_validation_risk=float(best_val.value) if best_val is not None and n_done else float("nan"),
        restored=restored, extra=extra,
    )


def warn_stop(result, name, cfg, hint=""):
    """Warn about a stop that the user should know of: divergence, no improvement on the start, interruption, or
    ``max_iter`` reached."""
    if result.stop_reason == "diverged":
        warn(
            f"{name}: the training risk diverged (became non-finite or grew above {DIVERGENCE_FACTOR:g} times "
            f"its starting value) after {result.n_iter} iterations; training stopped and {result.restored} "
            f"seen were restored. The flow is too stiff for this time step: use a smaller learning_rate{hint}, "
            "or standardise the inputs.",
            DivergenceWarning,
        )
    elif result.stop_reason == "no_improvement":
        e = result.extra
        before = e.get("failed_reason", "max_iter")
        warn(
            f"{name}: the fit ended with a training risk of {e.get('final_risk', float('nan')):.4g}, not below its "
            f"starting value {e.get('initial_risk', float('nan')):.4g} (after {result.n_iter} iterations, stopped "
            f"by {before!r}); {result.restored} were restored (training risk "
            f"{e.get('restored_risk', float('nan')):.4g}). The time step is too large for this problem: use a "
            f"smaller learning_rate{hint}, or standardise the inputs.",
            DivergenceWarning,
        )
    elif result.stop_reason == "interrupted":
        warn(
            f"{name}: fit interrupted after {result.n_iter} complete iterations; the model trained so far was "
            "kept and is usable.",
            FitInterruptedWarning,
        )
    elif result.stop_reason == "max_iter" and cfg.tol > 0:
        warn(
            f"{name}: max_iter={cfg.max_iter} reached before the risk stopped decreasing; increase max_iter "
            "for a closer approximation of the gradient flow.",
            ConvergenceWarning,
        )

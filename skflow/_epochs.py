"""How many epochs a fit should run, chosen by cross-validation of its own learning curve (``max_iter='auto'``).

One or two probe fits, each on four fifths of the rows with the other fifth held out, record the held-out risk
after every epoch; their curves are averaged, weighted by the held-out rows' weights, and the last epoch of the
least mean risk is the budget of the final fit on every row. Early stopping as a regulariser, without losing the
held-out rows to the model.

The risk, not the accuracy, chooses (for a classifier too): the accuracy of a few dozen rows moves in steps of
several points and its best epoch is often an early, lucky one. Measured for ``RKHSNODEClassifier()`` against
``SVC()`` (test accuracy, 3 splits or seeds each): on standardised ``make_classification`` data (3 and 5 classes,
129 / 257 / 385 rows, 18 fits) the accuracy rule on one hold-out was 0.007 above ``SVC()`` on average, 0.095 below
it at worst; the risk rule is about 0.01-0.02 above on average and never 0.05 below.

What the search costs, and why (the default fit should cost about what a cross-validated kernel machine does,
``GridSearchCV`` of ``SVC`` over 5 x 4 settings and 5 folds). The levers, each chosen from the held-out curves of
every fold of the five-fold search recorded on wine, breast cancer, iris, digits, MNIST-1D and the 18
``make_classification`` fits above, replayed offline for each rule (never tuned on one set):

* **Patience** (:data:`PATIENCE`): a probe stops once its held-out risk has not improved for 15 epochs, i.e.
  once it has clearly passed its minimum (checked every :data:`PROBE_SYNC_EVERY` epochs). On noisy data the
  minimum comes at 15-50 epochs of the budget of 100, so the probes stop at a third to a half of it; on clean
  data the risk keeps falling and nothing changes. A curve that stopped is continued at its last value in the
  mean, so a fold that stopped early does not truncate the others (the minimum of a rising curve is behind it).
  Replayed with five folds, patience 10 changed no public set's accuracy and halved the search.
* **Folds** (:data:`MAX_FOLDS`): at most two (a fifth each), down from five; one from 1250 rows, where a fifth
  is :data:`TARGET_VALIDATION_ROWS` rows. Replayed, two folds with patience 10-20 matched five folds within
  0.01 on every public set and about 0.005 in the mean over the ``make_classification`` fits (their worst
  split, 5 classes and 129 rows, fell to 0.065 below ``SVC()`` with 512 features, 0.048 with 256), one fold lost
  0.03-0.04 on some 129-row splits (26 held-out rows), hence two below 1250 rows.
* **Candidate epochs** (``_auto_max_iter``): kept at 100: a budget of 60 lost 0.005 on digits, whose held-out
  risk still falls at epoch 100.

Together with the narrower default feature map of ``RKHSNODEClassifier`` (256 random features, see its
``n_features``), the search runs about 90-130 epochs-on-every-row (it ran 400-440), and a default fit costs
0.2x-2.6x the grid search (median 0.8x, it was about 8x) on the sets above, one thread each; against ``SVC()``
the ``make_classification`` fits are 0.013 above on average (0.021 before) and at worst 0.048 below (0.025).
"""

import copy
import math

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils import check_random_state
from sklearn.utils.validation import _num_samples

from . import distributed

__all__ = ["EpochSearchMixin", "PATIENCE", "TARGET_VALIDATION_ROWS", "cross_validated_epochs", "n_search_folds"]

#: the held-out rows (over all the folds) that should score each epoch of the search
TARGET_VALIDATION_ROWS = 250
#: the most folds a search runs (each holds out a fifth)
MAX_FOLDS = 2
#: a probe stops once its held-out risk has not improved for this many epochs (it has passed its minimum)
PATIENCE = 15
#: a probe brings its records to the host (and can stop) every this many epochs
PROBE_SYNC_EVERY = 5
#: the relative decrease of the held-out risk that counts as an improvement for :data:`PATIENCE`
PATIENCE_TOL = 1e-6
#: fewer rows than this: no search (the budget is used)
MIN_ROWS = 50


def n_search_folds(n_rows, fraction=0.2):
    """Folds of the search on ``n_rows`` rows: one hold-out of ``fraction`` of them when it has at least
    :data:`TARGET_VALIDATION_ROWS` rows, else as many (up to :data:`MAX_FOLDS`) as reach that many; 0 below
    :data:`MIN_ROWS` rows."""
    if n_rows < MIN_ROWS:
        return 0
    n_val = max(1, int(round(fraction * n_rows)))
    return int(min(MAX_FOLDS, max(1, math.ceil(TARGET_VALIDATION_ROWS / n_val))))


def cross_validated_epochs(run_probe, y, n_folds, seed, stratify=True, sample_weight=None):
    """The epochs of the best mean held-out score over ``n_folds`` folds, and the record of the search.

    ``run_probe(train_index, val_index) -> curve or None`` fits a probe on the rows ``train_index`` and returns the
    held-out score after each epoch (higher is better; None when the fold could not be fitted). The folds are the
    first ``n_folds`` of a shuffled (stratified, for classifiers) five-fold split seeded by ``seed``. A curve that
    stopped early (its probe's patience ran out past its minimum) is continued at its last score, so that every
    fold weighs in at every epoch that some fold reached.

    Returns ``(epochs, record)`` (``epochs`` None when no fold could be fitted); ``record`` holds the folds' held-out
    rows, the mean curve and the chosen epoch.
    """
    n = len(y)
    splitter = StratifiedKFold(5, shuffle=True, random_state=seed) if stratify else KFold(5, shuffle=True,
                                                                                            random_state=seed)
    try:
        folds = list(splitter.split(np.zeros((n, 1)), y))
    except ValueError:  # a class with fewer than 5 members: plain folds
        folds = list(KFold(5, shuffle=True, random_state=seed).split(np.zeros((n, 1))))
    curves, weights = [], []
    for train_index, val_index in folds[:n_folds]:
        curve = run_probe(train_index, val_index)
        if curve is None or len(curve) == 0:
            continue
        curves.append(np.where(np.isfinite(curve), curve, -np.inf))
        weights.append(float(len(val_index) if sample_weight is None else np.sum(sample_weight[val_index])))
    if not curves:
        return None, {"n_folds": 0}
    length = max(len(c) for c in curves)
    stacked = np.stack([np.concatenate([c, np.full(length - len(c), c[-1])]) for c in curves])
    w = np.asarray(weights) / max(sum(weights), 1e-300)
    with np.errstate(invalid="ignore"):
        mean = np.where(np.isfinite(stacked).all(0), (np.where(np.isfinite(stacked), stacked, 0.0) * w[:, None]).sum(0),
                        -np.inf)
    # the last of the epochs of the best score: on clean data the flow keeps its budget
    epochs = int(np.flatnonzero(mean == mean.max())[-1]) + 1
    return epochs, {"n_folds": len(curves), "validation_rows": int(sum(len(f[1]) for f in folds[:n_folds])),
                    "mean_score": mean, "epochs": epochs, "probe_epochs": [len(c) for c in curves]}


class EpochSearchMixin:
    """The iteration budget of a fit: ``max_iter``, its cross-validated choice for ``max_iter='auto'``, or the single
    epoch of a ``partial_fit`` call; mixed into :class:`skflow._base.BaseFlowEstimator`, whose ``_fit`` it drives."""

    #: set on the private copy that :meth:`_partial_fit` fits: one epoch, continuing any previous fit
    _partial_call = False

    def _search_epochs(self, X, y, sample_weight=None):
        """``max_iter='auto'``: ``(epochs, record)``, the epochs of the best cross-validated held-out score
        (:mod:`skflow._epochs`) and the record of the search (for ``epoch_search_``), or ``(None, None)`` when no
        search runs (too few rows, a warm start, ``partial_fit``, a data-parallel fit, ``early_stopping=True``).
        Each probe is a private copy of this estimator, fitted for at most the budget ``_auto_max_iter`` with
        early stopping on its fold's rows, stopping once the held-out risk has not improved for
        :data:`PATIENCE` epochs (no warnings, no diagnostics)."""
        try:  # bad input: no search, the fit itself raises its error
            X, y = self._validate_fit_data(X, y)
        except (TypeError, ValueError):
            return None, None
        n = _num_samples(X)
        folds = n_search_folds(n)
        if (self.early_stopping or (self.warm_start and hasattr(self, "flow_")) or self._partial_call
                or distributed.current() is not None or folds == 0):
            return None, None
        ya = np.asarray(y)
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)

        def run_probe(train_index, val_index):
            probe = self._shallow_copy(keep=lambda name: not name.endswith("_"))
            # patience: the probe stops once its held-out risk has passed its minimum by PATIENCE epochs
            probe.early_stopping, probe.tol, probe.n_iter_no_change = True, PATIENCE_TOL, PATIENCE
            probe._sync_every = PROBE_SYNC_EVERY  # the stopping rule sees the risk every few epochs, not every 20
            probe.verbose, probe.warm_start, probe._search_fit = 0, False, True
            probe._resolved_max_iter = self._auto_max_iter
            probe._search_fold = (train_index, val_index)
            try:
                probe._fit(X, ya, w)
            except ValueError:  # e.g. a fold without a class: no curve (bad input raises in the real fit)
                return None
            if probe.stop_reason_ == "interrupted":  # Ctrl-C in the search: the fit stops, nothing changes
                raise KeyboardInterrupt
            h = probe.history_
            # the held-out risk, not the accuracy: see skflow._epochs for why
            return -h.get("val_risk", np.zeros(0))

        seed = check_random_state(copy.deepcopy(self.random_state)).randint(2**31 - 1)
        return cross_validated_epochs(run_probe, ya, folds, seed, stratify=self._stratify, sample_weight=w)

    #: ``max_iter='auto'`` (estimators that offer it): the epoch budget of the search, and of the fit without one
    _auto_max_iter = 100

    def _iteration_budget(self):
        """The iterations this fit may run: ``max_iter``, the epochs chosen for ``max_iter='auto'`` (see
        :meth:`_fit_auto`), or one epoch for a ``partial_fit`` call."""
        if self._partial_call:
            return 1
        if self.max_iter == "auto":
            return self.__dict__.get("_resolved_max_iter", self._auto_max_iter)
        return self.max_iter

    def _fit_auto(self, X, y, sample_weight=None):
        """``fit`` with ``max_iter='auto'``: choose the epochs by cross-validation (:meth:`_search_epochs`), then
        fit on every row for that many (``max_iter_``; the search in ``epoch_search_``). Other values fit
        directly."""
        if self.max_iter != "auto":
            return self._fit(X, y, sample_weight)
        epochs, record = self._search_epochs(X, y, sample_weight)
        self._resolved_max_iter = self._auto_max_iter if epochs is None else epochs
        try:
            self._fit(X, y, sample_weight)
        finally:
            self.__dict__.pop("_resolved_max_iter", None)
        self.max_iter_ = epochs if epochs is not None else self._auto_max_iter
        self.epoch_search_ = record
        return self

    @property
    def _holds_out(self):
        """Whether this fit holds out rows for early stopping (never in ``partial_fit``)."""
        return self.early_stopping and not self._partial_call

    def _partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)`` (one full-batch step with ``batch_size=None``), continuing the model of the
        previous call (or of ``fit``); the first call initialises it. As ``MLPClassifier.partial_fit``: no early
        stopping, no ``max_iter`` / ``tol`` rule; the history grows by one iteration per call. ``classes``:
        classifiers, every label of the stream, required on the first call."""
        self._validate_params()
        return self._transaction(lambda work: work._fit(X, y, sample_weight), _partial_call=True,
                                 _partial_classes=classes)


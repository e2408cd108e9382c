"""Build the compiled step graphs of the estimators ahead of time: ``python -m skflow.precompile``.

With ``compile='auto'`` (the default) a fit runs its training steps compiled whenever the compiled graph of its
model shape is on disk, and otherwise eagerly, never waiting for a compiler: it then asks for the graph to be built
in a background process (at the lowest CPU priority, one thread), and switches to it as soon as it lands. The
graphs are AOTInductor packages (``.pt2``) in :func:`cache_dir`: ``$SKFLOW_CACHE_DIR`` if set, else
``~/.cache/skflow`` (``$XDG_CACHE_HOME/skflow``), one folder per torch version and CPU. Any later process of the
same machine loads them in milliseconds. Delete the folder (or run ``python -m skflow.precompile --clear``) to
clear the cache; :func:`set_background_builds` turns the background builds off.

This command fits each estimator briefly with ``compile=True`` on random data of the given shape, so that the
first real fit of a new machine already finds its graph::

    python -m skflow.precompile --n-features 16 --n-outputs 1 --dtype float32 float64

Two tiers of graphs are kept. A block's own graph (its layers unrolled, the fastest) specialises on the depth
``n_layers``, the input and output dimensions, the activation and the dtype; the number of rows, the width and
the state dimension are symbolic, so one package serves every width and every ``extra_dims``. The NODE engines
also have *depth-generic* layer graphs (one forward and one adjoint layer per activation and dtype, every size
symbolic): a fit whose own graph is not built yet runs them, its depth a loop outside the graphs (an iteration
measured 1.1-1.3x the time of its own graph, 0.7x the eager one), while the background build makes its own
graph. This command builds both tiers, so that a grid search over ``n_layers`` runs compiled from its first fit.
"""

import argparse
import os
import shutil
import time

import numpy as np

from .flows._aot import cache_dir, pending_builds, set_background_builds, wait_for_builds
from .flows._flow import BUILD_LAYER_GRAPHS

__all__ = ["cache_dir", "main", "pending_builds", "precompile", "set_background_builds", "wait_for_builds"]


def precompile(estimators=("node", "rkhs", "varpro"), n_features=16, n_outputs=1, n_classes=3,
               dtypes=("float64",), device="cpu", verbose=True, **params):
    """Fit each named estimator for two iterations with ``compile=True`` on random data, building its step graph
    into the on-disk cache (:func:`cache_dir`).

    Parameters
    ----------
    estimators : sequence of {'node', 'rkhs', 'varpro'}, default=('node', 'rkhs', 'varpro')
        ``MeanFieldNODERegressor``, ``RKHSNODEClassifier`` and ``VarProSHLRegressor``, at their defaults updated
        by ``params`` (a parameter an estimator lacks is ignored for it).
    n_features : int, default=16
        Input dimension of the data the kernels are built for.
    n_outputs : int, default=1
        Outputs of the regressors.
    n_classes : int, default=3
        Classes of the classifier.
    dtypes : sequence of {'float64', 'float32'}, default=('float64',)
        The precisions to build.
    device : str, default='cpu'
        The device to build for.
    verbose : bool, default=True
        Print each build's time.
    **params : dict
        Other estimator parameters (e.g. ``n_layers=20``).

    Returns
    -------
    dict
        Seconds per ``(estimator, dtype)``.
    """
    from . import MeanFieldNODERegressor, RKHSNODEClassifier, VarProSHLRegressor

    classes = {"node": MeanFieldNODERegressor, "rkhs": RKHSNODEClassifier, "varpro": VarProSHLRegressor}
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, n_features))
    times = {}
    for name in estimators:
        cls = classes[name]
        y = rng.integers(0, n_classes, 256) if name == "rkhs" else rng.standard_normal((256, n_outputs))
        y = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
        own = {k: v for k, v in params.items() if k in cls().get_params()}
        for dtype in dtypes:
            start = time.perf_counter()
            previous, BUILD_LAYER_GRAPHS["enabled"] = BUILD_LAYER_GRAPHS["enabled"], True
            try:
                cls(**{**own, "max_iter": 2, "compile": True, "dtype": dtype, "device": device, "random_state": 0,
                       "early_stopping": False}).fit(X, y)
            finally:
                BUILD_LAYER_GRAPHS["enabled"] = previous
            times[(name, dtype)] = time.perf_counter() - start
            if verbose:
                print(f"{cls.__name__} ({dtype}, {n_features} features): built in {times[(name, dtype)]:.1f} s",
                      flush=True)
    return times


def main(argv=None):
    """The command line (see the module documentation)."""
    parser = argparse.ArgumentParser(prog="python -m skflow.precompile", description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", nargs="+", default=["node", "rkhs", "varpro"],
                        choices=["node", "rkhs", "varpro"])
    parser.add_argument("--n-features", type=int, default=16)
    parser.add_argument("--n-outputs", type=int, default=1)
    parser.add_argument("--n-classes", type=int, default=3)
    parser.add_argument("--n-layers", type=int, default=None)
    parser.add_argument("--dtype", nargs="+", default=["float64"], choices=["float64", "float32"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clear", action="store_true", help="delete the cache of compiled graphs, then exit")
    args = parser.parse_args(argv)
    folder = os.path.dirname(cache_dir())
    if args.clear:
        shutil.rmtree(folder, ignore_errors=True)
        print(f"cleared {folder}")
        return
    extra = {} if args.n_layers is None else {"n_layers": args.n_layers}
    precompile(args.estimators, args.n_features, args.n_outputs, args.n_classes, args.dtype, args.device, **extra)
    print(f"compiled graphs: {cache_dir()}")


if __name__ == "__main__":  # pragma: no cover
    main()

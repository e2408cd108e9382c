"""Step graphs compiled ahead of time and kept on disk: built once per machine, loaded by every process in ms.

An engine's training step is one block function of tensors (:meth:`~skflow.flows._flow.Flow.sweep_blocks`). Here it
is exported (``torch.export``) and compiled by AOTInductor into a ``.pt2`` package, a shared library with its own
C++ runner. The sizes a block function lists in its ``symbolic_dims`` attribute stay symbolic in the package (by
default dimension 0 of the first two arguments, the rows; the engines add the width and the state dimension, and
their depth-generic layer graphs leave every size symbolic); a size of 1 stays static. A package is keyed by
everything else the graph specialises on: the block function and its constants (depth, activation, output scale,
...), the static sizes of its arguments, the dtype, the device, the torch version, the CPU's vector extension, and
a hash of the engines' source (a new skflow never loads an old graph).

Loading a package takes milliseconds and needs no compiler, no Dynamo tracing and no lock on the interpreter, so
``compile='auto'`` runs a step compiled whenever its package is on disk. When it is not, the fit runs eagerly
and asks for it to be built *in another process* (at the lowest CPU priority, one thread): the build (20-40 s on
one CPU core) never holds this process's interpreter, so the eager fit beside it keeps its speed on a machine of
few cores, where a build thread in the same process slowed it up to 28 times. The fit
looks for the package at most twice a second and switches to the compiled step as soon as it lands (the
results are equal up to float rounding).

Where the packages live: ``$SKFLOW_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/skflow`` (by default
``~/.cache/skflow``), in a folder per torch version and CPU (:func:`cache_dir`). Delete it to clear the cache;
``python -m skflow.precompile`` builds the packages of given model shapes ahead of time (and ``--clear``
deletes them).
"""

import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
import traceback

import torch

__all__ = ["AOTGraph", "background_builds_enabled", "cache_dir", "pending_builds", "set_background_builds",
           "wait_for_builds"]

_ENV = "SKFLOW_CACHE_DIR"
#: how often (seconds) a fit whose package is being built looks for it on disk
POLL_SECONDS = 0.5
#: a build's lock file older than this (seconds) is taken to be left by a build that died
STALE_LOCK_SECONDS = 900

#: at most this many background builds run at once for one process (a grid search over ``n_layers`` asks for one
#: package per depth: the others are asked for again by the fits that still find none, once a build ends)
MAX_BUILDS = max(1, (os.cpu_count() or 1) // 4)

#: ``SKFLOW_BACKGROUND_BUILDS=0`` in the environment turns the background builds off for every process
_BACKGROUND = {"enabled": os.environ.get("SKFLOW_BACKGROUND_BUILDS", "1").strip().lower() not in ("0", "false", "no")}
_PROCS = {}  # package path -> the Popen building it (this process's requests)
_LOCK = threading.Lock()
_SOURCE_HASH = []
#: the background build process's program (``python -c``; ``-m`` would import this module twice)
_CHILD = "import sys; from skflow.flows._aot import main; sys.exit(main(sys.argv[1:]))"


def cache_dir():
    """The folder of this machine's compiled step packages (created on first use)."""
    root = os.environ.get(_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "skflow")
    capability = torch.backends.cpu.get_cpu_capability()
    tag = f"torch-{torch.__version__}-{platform.machine()}-{capability}".replace("+", "_").replace(os.sep, "_")
    return os.path.join(root, "aot", tag)


def set_background_builds(enabled):
    """Turn the background builds of ``compile='auto'`` on or off (on by default); returns the previous setting."""
    previous = _BACKGROUND["enabled"]
    _BACKGROUND["enabled"] = bool(enabled)
    return previous


def background_builds_enabled():
    """Whether a fit that finds no package asks for one to be built in another process."""
    return _BACKGROUND["enabled"]


def pending_builds():
    """The paths of the packages this process asked for that are still being built."""
    with _LOCK:
        return [path for path, proc in _PROCS.items() if proc.poll() is None]


def wait_for_builds(timeout=None):
    """Wait for this process's background builds to end (at most ``timeout`` seconds in all); returns how many
    still run."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _LOCK:
        procs = list(_PROCS.values())
    for proc in procs:
        try:
            proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            break
    return len(pending_builds())


def _source_hash():
    """A hash of the engines' source files: a package built by another version of the block functions is never
    loaded."""
    if not _SOURCE_HASH:
        folder = os.path.dirname(os.path.abspath(__file__))
        digest = hashlib.sha256()
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as handle:
                    digest.update(name.encode() + handle.read())
        _SOURCE_HASH.append(digest.hexdigest()[:16])
    return _SOURCE_HASH[0]


class AOTGraph:
    """The on-disk compiled versions of one block function with its constants bound, one per argument signature.

    ``block(*tensors, **constants)``: the sizes named in ``block.symbolic_dims`` (one tuple of names, or None
    for a static size, per argument; ``'rows'`` names the rows, at least 2 in a package) are symbolic in the
    package; the other sizes, the dtype and the device are fixed per package.
    """

    def __init__(self, block, constants):
        self.block = block
        self.constants = dict(constants)
        self._paths = {}  # signature -> package path
        self._raw = {}  # (device, (shape, dtype) of every argument) -> package path
        self._declared = declared = getattr(block, "symbolic_dims", (("rows",), ("rows",)))
        #: the rows are dimension 0 of the first two arguments, and of no other (the check of a step's fast path)
        self._rows_first = (len(declared) >= 2 and all(d and d[0] == "rows" for d in declared[:2])
                            and not any("rows" in (d or ()) for d in declared[2:])
                            and not any("rows" in (d or ())[1:] for d in declared[:2]))
        self._runners = {}  # package path -> loaded runner
        self._looked = {}  # package path -> time of the last look on disk
        self._failed = set()  # package paths that failed to build or load (in this process)
        self._asked = {}  # package path -> time of the last request (an eager fit asks at most every POLL_SECONDS)

    def symbolic(self, args):
        """The names of the symbolic dimensions of every argument (None: a static size), from the block's
        ``symbolic_dims`` (default: dimension 0 of the first two arguments is ``'rows'``). A dimension of size 1
        stays static (a size-1 dimension broadcasts: it is another graph), keyed as 1."""
        declared = self._declared
        names = []
        for i, a in enumerate(args):
            own = tuple(declared[i]) if i < len(declared) and declared[i] else ()
            names.append([own[j] if j < len(own) and (own[j] == "rows" or a.shape[j] >= 2) else None
                          for j in range(a.dim())])
        return names

    def accepts(self, args):
        """Whether the packages can run ``args``: every dimension of rows has at least 2 rows (a package's rows are
        symbolic from 2 on; a block of one row runs eagerly)."""
        if self._rows_first:
            return min(a.shape[0] for a in args[:2]) >= 2
        return all(size >= 2 for names, a in zip(self.symbolic(args), args)
                   for name, size in zip(names, a.shape) if name == "rows")

    def signature(self, args):
        return tuple((tuple("*" if name else size for name, size in zip(names, a.shape)), str(a.dtype),
                      a.device.type) for names, a in zip(self.symbolic(args), args))

    def spec(self, args):
        return {"block": [self.block.__module__, self.block.__qualname__],
                "constants": sorted(self.constants.items()), "source": _source_hash(),
                "args": [[list(a.shape), str(a.dtype).replace("torch.", ""), a.device.type] for a in args],
                "symbolic": self.symbolic(args)}

    def path(self, args):
        raw = (args[0].device, *((a.shape, a.dtype) for a in args))  # a step's fast path: one dict lookup
        path = self._raw.get(raw)
        if path is None:
            path = self._raw[raw] = self._path(args)
        return path

    def _path(self, args):
        sig = self.signature(args)
        path = self._paths.get(sig)
        if path is None:
            spec = self.spec(args)
            keyed = {**spec, "args": [list(entry) for entry in sig]}
            name = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:24]
            path = self._paths[sig] = os.path.join(cache_dir(), f"{self.block.__name__}-{name}.pt2")
        return path

    def is_loaded(self, device, dtype):
        """Whether a package of this graph is loaded for ``device`` (type) and ``dtype`` in this process."""
        wanted = (str(dtype), torch.device(device).type)
        return any(sig[0][1:] == wanted for sig, path in self._paths.items() if path in self._runners)

    def runner(self, args, wait=True):
        """The loaded package for ``args``, or None when it is not on disk (or failed); ``wait=False`` looks on
        disk at most every :data:`POLL_SECONDS`."""
        path = self.path(args)
        runner = self._runners.get(path)
        if runner is not None or path in self._failed:
            return runner
        now = time.monotonic()
        if not wait and now - self._looked.get(path, -1e9) < POLL_SECONDS:
            return None
        self._looked[path] = now
        if not os.path.exists(path):
            if os.path.exists(path + ".failed"):
                self._failed.add(path)
            return None
        try:
            runner = _load(path)
        except Exception:  # noqa: BLE001 - a damaged package: never tried again in this process
            self._failed.add(path)
            return None
        self._runners[path] = runner
        return runner

    def build(self, args):
        """Build the package of ``args`` in this process (``compile=True``) and load it."""
        path = self.path(args)
        build_package(self.spec(args), path)
        return self.runner(args)

    def _wanted(self, args):
        """The package path of ``args`` when it should be built now (not on disk, not failed, not being built by
        this process), else None."""
        path = self.path(args)
        proc = _PROCS.get(path)
        if (proc is not None and proc.poll() is None) or path in self._failed or os.path.exists(path):
            return None
        return path

    def request(self, args, also=None):
        """Ask for the package of ``args`` to be built in a background process (see the module documentation),
        then, in the same process, those of ``also()`` (pairs ``(AOTGraph, args)``: e.g. the depth-generic layer
        graphs, built after the graph of the shape at hand). A package is skipped when it is built or being built
        (by any process) or failed; nothing starts when :data:`MAX_BUILDS` builds of this process run, or when
        background builds are off."""
        if not _BACKGROUND["enabled"]:
            return None
        path, now = self.path(args), time.monotonic()
        if now - self._asked.get(path, -1e9) < POLL_SECONDS:  # not a lock and a look on disk at every step
            return None
        self._asked[path] = now
        with _LOCK:
            if sum(p.poll() is None for p in set(_PROCS.values())) >= MAX_BUILDS:
                return None
            jobs = []
            for graph, graph_args in ((self, args), *(also() if also else ())):
                wanted = graph._wanted(graph_args)
                try:
                    if wanted is None or wanted in (j[1] for j in jobs) or not _take_lock(wanted):
                        continue
                except OSError:  # a cache folder that cannot be written: the fits stay eager
                    graph._failed.add(wanted)
                    continue
                jobs.append((graph, wanted, graph_args))
            if not jobs:
                return None
            try:
                argv = []
                for graph, wanted, graph_args in jobs:
                    with open(wanted + ".json", "w") as handle:
                        json.dump(graph.spec(graph_args), handle)
                    argv += [wanted + ".json", wanted]
                root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
                env = {**os.environ, "OMP_NUM_THREADS": "1",
                       "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
                with open(jobs[0][1] + ".log", "w") as log:
                    proc = subprocess.Popen([sys.executable, "-c", _CHILD, *argv],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            **_own_process_group())
            except Exception:  # noqa: BLE001 - no subprocess here (a sandbox): the fit stays eager
                for graph, wanted, _ in jobs:
                    _release_lock(wanted)
                    graph._failed.add(wanted)
                return None
            for _, wanted, _ in jobs:
                _PROCS[wanted] = proc
        return proc


def _load(path):
    """A callable running the package ``path`` on tensors (its flat inputs and outputs): the C++ loader itself
    (milliseconds), without importing TorchInductor (1-2 s) nor its Python wrapper's per-call tree flattening."""
    loader_class = getattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader", None)
    if loader_class is None:  # another torch layout: the public loader
        from torch._inductor import aoti_load_package

        return aoti_load_package(path)
    device_index = -1  # the package's device (the current CUDA device for a CUDA package)
    loader = loader_class(path, "model", False, 1, device_index)

    def run(*tensors):
        return loader.run(list(tensors))

    return run


def _own_process_group():
    """Popen arguments that put the build in a process group of its own (a Ctrl-C of the terminal does not reach
    it) but in the fit's *session*: with Linux's autogroup scheduling a new session (``setsid``) would be a
    scheduling group of its own, given a fair share of the CPU whatever its nice value. Measured on 2 cores: the
    demo's friedman1 NODE fit took 21 s beside a build in a session of its own, against 3 s alone."""
    if os.name != "posix":
        return {}
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"preexec_fn": os.setpgrp}  # noqa: PLW1509 - Python 3.10: no process_group argument


def _take_lock(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock = path + ".lock"
    for _ in range(2):
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            try:
                if time.time() - os.path.getmtime(lock) < STALE_LOCK_SECONDS:
                    return False
                os.remove(lock)
            except OSError:
                return False
    return False


def _release_lock(path):
    try:
        os.remove(path + ".lock")
    except OSError:
        pass


def _example(shape, dtype, device):
    dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


class _Graph(torch.nn.Module):
    def __init__(self, fn, constants):
        super().__init__()
        self.fn, self.constants = fn, constants

    def forward(self, *tensors):
        return self.fn(*tensors, **self.constants)


def build_package(spec, path):
    """Export and compile the block function of ``spec`` (see :meth:`AOTGraph.spec`) into the package ``path``
    (written under a temporary name, then renamed: a reader never sees half a package)."""
    import torch._inductor

    module, name = spec["block"]
    fn = getattr(importlib.import_module(module), name)
    symbolic = spec.get("symbolic") or [["rows"] if i < 2 else [] for i in range(len(spec["args"]))]
    small_rows = any(size < 3 for (shape, _, _), names in zip(spec["args"], symbolic)
                     for size, name in zip(shape, names) if name == "rows")
    # a block of 2 rows as the example would make 2 look special to the tracer: every row dimension takes 8
    args = [_example([8 if small_rows and name == "rows" else size for size, name in zip(shape, names)]
                     if names else shape, dtype, device)
            for (shape, dtype, device), names in zip(spec["args"], symbolic)]
    rows = torch.export.Dim("rows", min=2)
    dynamic = tuple({j: rows if name == "rows" else torch.export.Dim.AUTO for j, name in enumerate(names) if name}
                    or None for names in symbolic)
    with torch.no_grad():
        program = torch.export.export(_Graph(fn, dict(spec["constants"])), tuple(args), dynamic_shapes=(dynamic,))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path[:-4]}.{os.getpid()}.partial.pt2"  # AOTInductor wants the suffix
        torch._inductor.aoti_compile_and_package(program, package_path=partial)
    os.replace(partial, path)
    return path


def _lowest_priority():
    """Run this process only on CPU time nothing else wants: Linux's ``SCHED_IDLE`` class where available (any
    other task preempts it at once), else the highest nice value."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        if hasattr(os, "nice"):
            os.nice(19)


def main(argv=None):
    """Build packages in the background process, one after the other: ``main([SPEC.json, PACKAGE.pt2, ...])``
    (see :data:`_CHILD`); returns the number that failed."""
    argv = sys.argv[1:] if argv is None else argv
    _lowest_priority()
    torch.set_num_threads(1)
    failed = 0
    for spec_file, path in zip(argv[::2], argv[1::2]):
        try:
            with open(spec_file) as handle:
                build_package(json.load(handle), path)
        except BaseException:  # noqa: BLE001 - recorded: the fits of every process then stay eager for this graph
            failed += 1
            with open(path + ".failed", "w") as handle:
                handle.write(traceback.format_exc())
        finally:
            _release_lock(path)
    return failed

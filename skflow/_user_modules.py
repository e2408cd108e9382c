"""Running a user's torch module inside a fit: without touching torch's global state, and validated first.

torch's generators and default dtype are process-wide. :func:`torch_state` sets them for a block (a module's
construction, its validation, a training step of a module that draws random numbers) under a process-wide lock
and restores them after, so that a fit reads and writes none of them and fits in threads equal the same fits run
one after the other. :func:`check_module` runs a module on the first batch and raises a clear error naming it
when its output is unusable, before anything is trained.
"""

import contextlib
import threading

import torch

__all__ = ["PROBE_ROWS", "TORCH_STATE_LOCK", "SeededSteps", "check_module", "torch_state"]

#: rows of the first batch a user's module is validated on (at most)
PROBE_ROWS = 1024

#: serialises every change skflow makes to torch's process-wide state (seeded generators, default dtype)
TORCH_STATE_LOCK = threading.RLock()


@contextlib.contextmanager
def torch_state(seed, dtype, device=None, build=False):
    """Run a block (a module's construction, its validation, or one training step of a module that draws random
    numbers) with torch's generators seeded with ``seed`` and the default dtype ``dtype``, and restore torch's
    global state after it.

    torch's generators and default dtype are process-wide: the block runs under a process-wide lock, so that
    two fits in two threads never see each other's seeds, and the generators' states and the default dtype are
    those of before the block when it ends (a fit reads and writes none of them). ``device``: a CUDA device
    whose generator is seeded and restored too (the CPU generator always is). ``build``: the CPU is also the
    default device in the block (a thread-local ``torch.device`` context): modules are built on the CPU, then
    moved, so that a seed gives the same initialisation on every device."""
    device = None if device is None else torch.device(device)
    cuda = [] if device is None or device.type != "cuda" else [device.index if device.index is not None
                                                                 else torch.cuda.current_device()]
    with TORCH_STATE_LOCK:
        previous = torch.get_default_dtype()
        with (torch.random.fork_rng(devices=cuda, device_type="cuda"),
              torch.device("cpu") if build else contextlib.nullcontext()):
            torch.random.default_generator.manual_seed(seed)
            for index in cuda:
                torch.cuda.default_generators[index].manual_seed(seed)
            torch.set_default_dtype(dtype)
            try:
                yield
            finally:
                torch.set_default_dtype(previous)


def rng_states(device):
    """The states of torch's CPU generator and of ``device``'s (CUDA), to tell whether a block drew from them."""
    states = [torch.random.default_generator.get_state()]
    device = torch.device(device)
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


class SeededSteps:
    """``flow.step_scope`` of a module that draws random numbers (dropout): step ``k`` runs under
    :func:`torch_state` with the seed ``(seed, k)``, so that its draws are reproducible, independent of other
    threads, and leave torch's generators as they were. Picklable (no closure)."""

    def __init__(self, seed, dtype):
        self.seed = int(seed)
        self.dtype = dtype

    def __getstate__(self):  # the dtype by name: a pickled state holds no torch object (skops can load it)
        return {"seed": self.seed, "dtype": str(self.dtype).removeprefix("torch.")}

    def __setstate__(self, state):
        dtype = state["dtype"]
        self.seed, self.dtype = int(state["seed"]), getattr(torch, dtype) if isinstance(dtype, str) else dtype

    def __call__(self, n_steps, device):
        return torch_state((self.seed * 1_000_003 + int(n_steps)) % (2**63 - 1), self.dtype, device)


def same_device(a, b):
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.type == "cuda" and (a.index is None) != (b.index is None):
        current = torch.cuda.current_device()
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return a.index == b.index


def check_output(module, Phi, X, dtype, device, mode):
    """A clear error when a module's output on the first batch is not a finite ``(n, M)`` tensor of the fit's
    dtype on its device."""
    name = type(module).__name__
    if not isinstance(Phi, torch.Tensor):
        raise TypeError(f"the feature module {name} must return a torch.Tensor of features (n, M); in {mode} mode it "
                        f"returned {type(Phi).__name__} on the first batch.")
    if Phi.ndim != 2 or Phi.shape[0] != X.shape[0] or Phi.shape[1] < 1:
        raise ValueError(f"the feature module {name} must map inputs of shape (n, d) to a tensor of features (n, M) "
                         f"with M >= 1; in {mode} mode it returned shape {tuple(Phi.shape)} for a first batch of "
                         f"shape {tuple(X.shape)}. End a convolutional network with nn.Flatten().")
    if not same_device(Phi.device, device):
        raise TypeError(f"the feature module {name} returned its features on {Phi.device} in {mode} mode, but the "
                        f"fit runs on {device}: create the tensors of forward() on the input's device (e.g. "
                        "torch.zeros(..., device=X.device)).")
    if Phi.dtype != dtype:
        raise TypeError(f"the feature module {name} returned features of dtype {Phi.dtype} in {mode} mode, but the "
                        f"fit's dtype is {dtype}: create the tensors of forward() with the input's dtype (or set "
                        "the estimator's dtype).")
    finite = torch.isfinite(Phi.detach())
    if not bool(finite.all()):
        bad = int((~finite).any(1).sum())
        raise ValueError(f"the feature module {name} returned non-finite features (NaN or infinity) on {bad} of the "
                         f"{X.shape[0]} rows of the first batch in {mode} mode, before any training step: check "
                         "its forward() and its initialisation, and that the inputs are finite and standardised.")


def check_module(module, X, dtype, device, seed=0):
    """Run ``module`` on the first batch ``X`` in eval mode (predictions) and in train mode (the steps, with the
    gradient); raise a clear error naming the module when its output is unusable. Returns ``(M, draws_random)``:
    the number of features and whether the train-mode forward draws from torch's generators (dropout).

    The module is left as it was: its buffers (BatchNorm statistics) are restored after the train-mode pass, and
    that pass draws from a seeded, restored generator (:func:`torch_state`, seeded with ``seed``: lazy modules
    initialise their parameters at the first forward)."""
    def run(mode):
        try:
            return module(X)
        except Exception as exc:  # the module's own error, with where it happened (its type is kept)
            if hasattr(exc, "add_note"):  # Python >= 3.11
                exc.add_note(f"(raised by the feature module {type(module).__name__} in {mode} mode on the first "
                             f"batch, of shape {tuple(X.shape)} and dtype {X.dtype}, on {X.device})")
            raise

    module.eval()
    with torch_state(seed, dtype, device), torch.no_grad():
        Phi = run("eval")
    check_output(module, Phi, X, dtype, device, "eval")
    M = int(Phi.shape[1])
    buffers = [b.detach().clone() for b in module.buffers()]
    try:
        module.train()
        with torch_state(seed, dtype, device):
            before = rng_states(device)
            with torch.enable_grad():
                Phi = run("train")
            draws_random = any(not torch.equal(a, b) for a, b in zip(before, rng_states(device)))
        check_output(module, Phi, X, dtype, device, "train")
        if Phi.shape[1] != M:
            raise ValueError(f"the feature module {type(module).__name__} returns {M} features in eval mode but "
                             f"{Phi.shape[1]} in train mode.")
        if any(p.requires_grad for p in module.parameters()) and not Phi.requires_grad:
            raise ValueError(f"the features of the module {type(module).__name__} do not depend on its trainable "
                             "parameters (the output is detached from the graph, e.g. by .detach(), .numpy() or "
                             "torch.no_grad() in forward()): the backbone could not be trained. Freeze the "
                             "parameters (requires_grad=False) to train the head alone.")
    finally:
        with torch.no_grad():
            for b, saved in zip(module.buffers(), buffers):
                b.copy_(saved)
        module.eval()
    return M, draws_random

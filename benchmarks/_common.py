"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so importable as ``_common``)."""

import glob
import hashlib
import os


def source_fingerprint():
    """sha256 (first 12 hex digits) of skflow's Python sources, as imported: which code a run measured (the
    checkout may change between runs)."""
    import skflow

    root = os.path.dirname(os.path.abspath(skflow.__file__))
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
        h.update(os.path.relpath(path, root).encode())
        with open(path, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:12]

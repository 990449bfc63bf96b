"""Process-wide settings the guard runs best with, applied by whoever owns the process.

A library must not change a whole process behind its caller's back, so nothing
in `lorastack.guardrails` calls these: the entry point that owns the process
does (the serve command, the command line), once.

- `limit_numpy_blas_threads`: before the PII models load, so that spaCy's NER
  multiplies its matrices with numpy's BLAS on the calling thread only.
- `freeze_loaded_objects`: after the models have loaded, in a long-lived
  process (the gateway), so that garbage collection stops walking them.
"""

from __future__ import annotations

import atexit
import gc
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

_freeze_lock = threading.Lock()
_thaw_registered = False


def _numpy_blas() -> ThreadpoolController:
    """The OpenBLAS bundled in numpy's wheel (none where numpy uses another BLAS)."""
    import numpy
    from threadpoolctl import ThreadpoolController

    bundled = Path(numpy.__file__).resolve().parent.parent / "numpy.libs"
    controller = ThreadpoolController()
    paths = [
        info["filepath"]
        for info in controller.info()
        if info["internal_api"] == "openblas" and Path(info["filepath"]).resolve().parent == bundled
    ]
    return controller.select(filepath=paths)


def limit_numpy_blas_threads() -> bool:
    """Run numpy's bundled OpenBLAS on one thread, process-wide; False where there is none.

    It would otherwise run every product above a small size on one thread per
    core: cores taken from whatever else runs there (a vLLM engine on the CPU),
    and a scan that no longer runs on one core. Only numpy's copy of OpenBLAS
    is limited (PyTorch has its own BLAS); nothing else in lorastack
    multiplies matrices with numpy. Call it before the PII models load: the
    NER uses numpy's BLAS only when it runs on one thread
    (`numpy_blas_single_threaded`).
    """
    blas = _numpy_blas()
    if not blas.info():
        return False
    blas.limit(limits=1)  # kept: process-wide until the process ends
    return True


def numpy_blas_single_threaded() -> bool:
    """Whether numpy's bundled OpenBLAS is there and runs on one thread."""
    found = _numpy_blas().info()
    return bool(found) and all(info["num_threads"] == 1 for info in found)


def freeze_loaded_objects() -> None:
    """Take every object alive now out of the garbage collector's walks, for good.

    Presidio's imports bring in transformers and torch: over 400,000 objects
    that live as long as the process. Every full garbage collection (Python
    runs one whenever enough long-lived objects pile up), in any thread,
    walked all of them: 0.23 s on one core, a stall in whichever scan or
    request triggered it. Frozen, a collection walks only what is newer. Call
    it once the models are loaded; objects made later are collected as usual.
    They are thawed at exit, so that shutdown still finalises them (nanobind,
    under torch, reports every object it finds alive then as a leak).
    """
    global _thaw_registered
    with _freeze_lock:
        gc.collect()
        gc.freeze()
        if not _thaw_registered:
            atexit.register(gc.unfreeze)
            _thaw_registered = True

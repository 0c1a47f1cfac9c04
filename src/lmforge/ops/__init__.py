"""Fast CPU kernels, kept apart from the plain model code in ``lmforge.models``.

Each kernel here computes exactly what its plain PyTorch counterpart computes (the same IEEE
fp32 arithmetic, summation order aside) and is used only where it was measured faster
(benchmarks/RESULTS.md). One switch turns all of them off, so tests compare the two paths
without patching private globals::

    with lmforge.ops.fast_kernels(False):
        reference = model(batch)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_enabled = True


def fast_kernels_enabled() -> bool:
    return _enabled


def set_fast_kernels(enabled: bool) -> None:
    global _enabled
    _enabled = bool(enabled)


@contextmanager
def fast_kernels(enabled: bool) -> Iterator[None]:
    """Run the block with the fast kernels on or off, restoring the previous setting."""
    previous = _enabled
    set_fast_kernels(enabled)
    try:
        yield
    finally:
        set_fast_kernels(previous)

"""Progress bars with rates for long work, shown to a person at a terminal only: never in logs,
pipes or CI (``CI=true``), where they would only add noise."""

from __future__ import annotations

import os
import sys


def progress_enabled() -> bool:
    """Bars for a person at a terminal only: not in logs, pipes or CI (CI=true or 1)."""
    return sys.stderr.isatty() and os.environ.get("CI", "").strip().lower() not in ("true", "1", "yes")


def progress(total: int, desc: str, unit: str):
    """A tqdm bar with its rate (``unit``/s), shown only when ``progress_enabled``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, leave=False,
                disable=not progress_enabled())

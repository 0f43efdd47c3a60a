"""How values read on a figure: tick labels (1e-3, not 0.0010000), and one precision per metric.

The order of an axis' levels is `analysis.design.axis_levels`'s business.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """numpy scalars to Python ones, so 1 (int64) and 1 (int) compare and print the same."""
    return value.item() if isinstance(value, np.generic) else value


def is_number(value: Any) -> bool:
    value = plain(value)
    # bool is an int subclass, but True/False are categories on an axis, not numbers.
    return isinstance(value, int | float) and not isinstance(value, bool)


def fmt_value(value: Any) -> str:
    """A parameter value as a tick label: 1e-3 not 0.001000, 32 not 32.0.

    Floats below 0.01 or from 1e4 up are written as mantissa-e-exponent (1e-3, 2.5e-4, 1e5)
    because a learning rate is read by its order of magnitude; 0.01 to 9999 stay decimal
    (0.01, 0.5, 3). Integral floats print as integers, since YAML often gives 8.0 for 8.
    """
    value = plain(value)
    if not is_number(value):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if 0.01 <= abs(value) < 1e4:
        if value == int(value):
            return str(int(value))
        return f"{value:.4g}"
    return _sci(value)


def _sci(value: float) -> str:
    exponent = math.floor(math.log10(abs(value)))
    mantissa = round(value / 10**exponent, 3)
    if abs(mantissa) >= 10:  # rounding carried into the next power: 9.9996e-4 -> 1e-3
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.3g}e{exponent}"


def fmt_levels(values: Iterable[Any]) -> list[str]:
    """Labels for one axis, in one style: when any level needs an exponent (1e-4), levels
    below 1 get one too, so a log-spaced grid reads 1e-4, 1e-3, 1e-2, 1e-1, not 0.01, 0.1."""
    values = [plain(v) for v in values]
    labels = [fmt_value(v) for v in values]
    if not any("e" in label for label, v in zip(labels, values, strict=True) if is_number(v)):
        return labels
    return [
        _sci(v) if isinstance(v, float) and 0 < abs(v) < 1 else label
        for label, v in zip(labels, values, strict=True)
    ]


def fmt_on_axis(value: Any, axis: list[Any]) -> str:
    """A value written the way its axis writes it (for messages that name cells)."""
    value = plain(value)
    return fmt_levels(axis)[axis.index(value)] if value in axis else fmt_value(value)


def fmt_number(value: Any, digits: int = 3) -> str:
    """A metric value in a cell or a table: fixed decimals, scientific when tiny or huge."""
    value = plain(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value != 0 and not 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def decimals_for(values: Iterable[Any]) -> int | None:
    """One number of decimals for every number of one metric on a page: three significant
    digits for its typical (median) cell, so accuracies read 0.987 and losses 0.051 or 1.963,
    and a tiny spread is 0.002, never 8.90e-04 beside 0.003.

    None (three significant digits for each number, `fmt_fixed`) when those decimals would
    write some cell's mean with fewer than two digits: cell means of 0.21 and 3.8e7 (a loss
    that diverged in some cells) would otherwise give the best cell "0"."""
    finite = sorted(abs(float(v)) for v in values if v is not None and math.isfinite(float(v)))
    mid = finite[len(finite) // 2] if finite else 0.0
    if mid == 0:
        return 3
    decimals = int(min(6, max(0, 2 - math.floor(math.log10(mid)))))
    smallest = next((v for v in finite if v > 0), mid)
    if smallest * 10**decimals < 10:  # under two significant digits at these decimals
        return None
    return decimals


def fmt_fixed(value: Any, decimals: int | None) -> str:
    """`value` at `decimals` decimals, or at three significant digits where that is None."""
    value = plain(value)
    if value is None or not math.isfinite(float(value)):
        return "–"
    if decimals is None:
        return f"{float(value):.3g}"
    return f"{float(value):.{decimals}f}"


def fmt_p(p: float) -> str:
    if math.isnan(p):
        return "–"
    return "<1e-4" if p < 1e-4 else f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def slug(metric: str) -> str:
    """A metric key as a file-name part: best/val/accuracy -> best_val_accuracy."""
    return re.sub(r"[^A-Za-z0-9]+", "_", metric).strip("_")


def short_list(items: Iterable[Any], limit: int = 8) -> str:
    """'a, b, c and 5 more': messages name offending runs without flooding a terminal."""
    items = [str(i) for i in items]
    head = ", ".join(items[:limit])
    return head if len(items) <= limit else f"{head} and {len(items) - limit} more"

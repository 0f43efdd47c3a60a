"""The grid study of the pair a scan points at, as a sweep file `localsweep run` takes as it is.

`method: grid`, the scan's metric, program and command; the pair's levels from the scan's good
region; three seeds; one budget (the scan's full `epochs`); every other parameter fixed at the
scan's best run; no early_terminate, no run_cap; the question as the top comment. The file's
YAML is written by hand so that every float reads back as a float (PyYAML reads `1e-3` as a
string), and it is read back and checked against what was meant before it is written.
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis.labels import fmt_number, fmt_value, plain
from analysis.scan_runs import Param
from analysis.table import AnalysisError
from sweepmap.config import READ_BY, Config

LEVELS = 4  # of a continuous parameter in the grid
GOOD = 0.25  # the good region: the range of the best quarter of the runs
MIN_GOOD = 3  # ... and of at least this many runs
SEEDS = [0, 1, 2]
WIDTH = 96  # of a comment line
COPIED = ("program", "command", "project", "entity")  # top-level keys kept from the scan


@dataclass(frozen=True)
class Emitted:
    text: str
    config: dict[str, Any]
    runs: int
    design: str  # "4 lr x 3 optimizer x 3 seeds = 36 runs of 8 epochs"


def yaml_scalar(value: Any) -> str:
    value = plain(value)
    if isinstance(value, float):
        if value == 0 or not math.isfinite(value):
            return "0.0" if value == 0 else str(value)
        if 0.01 <= abs(value) < 1e4:
            return repr(value)
        return _exponent(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000).strip()
    return text.removesuffix("...").strip()


def _readable(value: float, digits: int) -> float:
    if value == 0:
        return 0.0
    return float(f"{value:.{digits}g}")


def _one_two_five(value: float) -> float:
    """The nearest of 1, 2 and 5 times a power of ten, in log distance (2.36e-4 -> 2e-4)."""
    exponent = math.floor(math.log10(value))
    steps = [m * 10.0**e for e in (exponent, exponent + 1) for m in (1, 2, 5)]
    return _readable(min(steps, key=lambda v: abs(math.log10(v / value))), 1)


def continuous_levels(p: Param, good: pd.Series) -> list[Any]:
    """LEVELS levels over the good region's range: log-spaced and snapped to 1-2-5 for a
    log parameter, evenly spaced to two digits of the step for a linear one, whole numbers for
    an integer one. A region too narrow for distinct levels is widened, within the scan's
    bounds, until it has them."""
    lo, hi = float(good.min()), float(good.max())
    low = p.low if p.low is not None else -math.inf
    high = p.high if p.high is not None else math.inf
    for _ in range(12):
        if p.kind == "log":
            raw = np.geomspace(lo, hi, LEVELS) if hi > lo else np.array([lo])
            out: list[Any] = sorted({_one_two_five(float(v)) for v in raw})
        elif p.kind == "int":
            out = sorted({round(float(v)) for v in np.linspace(lo, hi, LEVELS)})
        else:
            step = (hi - lo) / (LEVELS - 1)
            decimals = max(0, 1 - math.floor(math.log10(step))) if step > 0 else 2
            out = sorted({round(float(v), decimals) for v in np.linspace(lo, hi, LEVELS)})
        out = [v for v in out if low <= v <= high] or out
        if len(out) >= min(LEVELS, _room(p)):
            return out
        if p.kind == "log":
            lo, hi = max(lo / 2, low if low > 0 else lo / 2), min(hi * 2, high)
        else:
            pad = max((hi - lo) / 2, abs(hi) * 0.1, 1.0 if p.kind == "int" else 0.01)
            lo, hi = max(lo - pad, low), min(hi + pad, high)
    return out


def _room(p: Param) -> int:
    """How many distinct levels the scan's bounds allow (an int range of 3 allows 3)."""
    if p.kind == "int" and p.low is not None and p.high is not None:
        return int(p.high - p.low) + 1
    return LEVELS


def good_runs(runs: pd.DataFrame, goal: str) -> pd.DataFrame:
    """The best quarter of the runs at the budget (at least MIN_GOOD)."""
    n = max(MIN_GOOD, math.ceil(GOOD * len(runs)))
    return runs.sort_values("y", ascending=goal == "min", kind="stable").head(n)


def emit(
    scan: dict[str, Any],
    pair: tuple[Param, Param],
    runs: pd.DataFrame,
    goal: str,
    epochs: int,
    header: list[str],
) -> Emitted:
    """The grid sweep as text. `runs` are the scan's runs at one budget (with "y"), `epochs`
    the scan's full budget, `header` the comment lines on the evidence, after the question."""
    good = good_runs(runs, goal)
    best = good.iloc[0]
    levels: dict[str, list[Any]] = {}
    why: list[str] = []
    for p in pair:
        if p.categorical:
            levels[p.name] = list(p.values)
            why.append(
                f"{p.name}: every value of the scan: a value poor at the scan's best settings "
                "may be the best one at another level of the pair, and a heatmap without it "
                "cannot show that"
            )
        else:
            levels[p.name] = continuous_levels(p, good[p.name].astype(float))
            spacing = {"log": "log-spaced", "int": "whole numbers"}.get(p.kind, "evenly spaced")
            why.append(
                f"{p.name}: {spacing} over the range of the best {len(good)} of {len(runs)} "
                f"runs ({fmt_value(good[p.name].min())} to {fmt_value(good[p.name].max())}), "
                "rounded"
            )
    params: dict[str, dict[str, Any]] = {name: {"values": v} for name, v in levels.items()}
    params["seed"] = {"values": SEEDS}
    params["epochs"] = {"value": int(epochs)}
    fixed: list[str] = []
    pair_names = {p.name for p in pair}
    for name, spec in (scan.get("parameters") or {}).items():
        if name in params:
            continue
        if isinstance(spec, dict) and "value" in spec:
            params[name] = {"value": plain(spec["value"])}
            continue
        value = plain(best[name]) if name in best else None
        if isinstance(value, float) and not value.is_integer():
            value = _readable(value, 3)
        params[name] = {"value": value}
        fixed.append(f"{name}={fmt_value(value)}")
    fixed += _unread_at_default(params, levels, pair_names, why)
    config: dict[str, Any] = {k: scan[k] for k in COPIED if k in scan}
    config["method"] = "grid"
    if "metric" in scan:
        config["metric"] = dict(scan["metric"])
    config["parameters"] = params
    sizes = [len(v) for v in levels.values()]
    n = math.prod(sizes) * len(SEEDS)
    grid = " x ".join(f"{s} {name}" for s, name in zip(sizes, levels, strict=True))
    design = f"{grid} x {len(SEEDS)} seeds = {n} runs of {epochs} epochs"
    a, b = pair
    comments = [
        f"Does the best {a.name} depend on the {b.name}?",
        "",
        *header,
        f"Levels: {why[0]};",
        *([f"{why[1]}."] if len(why) > 1 else []),
        f"Fixed at the scan's best run at the budget ({best['run_id']}, "
        f"{fmt_number(best['y'])}): " + (", ".join(fixed) or "nothing else varied") + ".",
        f"Grid: {design}.",
    ]
    wrapped = [w for c in comments for w in (textwrap.wrap(c, WIDTH) or [""])]
    text = "".join(f"# {c}\n" if c else "#\n" for c in wrapped) + _body(config)
    if yaml.safe_load(text) != config:  # a value that would not read back as written
        raise AssertionError(f"emitted YAML does not read back as meant:\n{text}")
    return Emitted(text, config, n, design)


def _unread_at_default(
    params: dict[str, dict[str, Any]], levels: dict[str, list[Any]], pair: set[str],
    why: list[str],
) -> list[str]:  # fmt: skip
    """A fixed option that some level of the pair does not read goes back to its default:
    train.py refuses a non-default value where it is ignored (momentum with adam)."""
    defaults = Config().to_dict()
    notes = []
    for key, (decider, readers) in READ_BY.items():
        spec = params.get(key)
        if decider not in pair or not spec or "value" not in spec:
            continue
        ignored = [v for v in levels[decider] if v not in readers]
        if ignored and spec["value"] != defaults[key]:
            notes.append(
                f"{key}={fmt_value(defaults[key])} (its default, not the best run's "
                f"{fmt_value(spec['value'])}: {decider}={ignored[0]} does not read it)"
            )
            spec["value"] = defaults[key]
    return notes


def _body(config: dict[str, Any]) -> str:
    lines = []
    for key, value in config.items():
        if key == "parameters":
            lines.append("parameters:")
            for name, spec in value.items():
                lines.append(f"  {name}:")
                for k, v in spec.items():
                    shown = _flow(v) if k == "values" else yaml_scalar(v)
                    lines.append(f"    {k}: {shown}")
        elif isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {yaml_scalar(v)}" for k, v in value.items()]
        elif isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"  - {yaml_scalar(v)}" for v in value]
        else:
            lines.append(f"{key}: {yaml_scalar(value)}")
    return "\n".join(lines) + "\n"


def _flow(values: list[Any]) -> str:
    """A list in one style: when one level needs an exponent, every level below 1 gets one
    (1.0e-4, 1.0e-3, 1.0e-2, not 1.0e-4, 1.0e-3, 0.01), as the project's sweeps write them."""
    shown = [yaml_scalar(v) for v in values]
    if any("e" in t for t, v in zip(shown, values, strict=True) if isinstance(v, float)):
        shown = [
            _exponent(v) if isinstance(v, float) and 0 < abs(v) < 1 else t
            for t, v in zip(shown, values, strict=True)
        ]
    return "[" + ", ".join(shown) + "]"


def _exponent(value: float) -> str:
    # PyYAML's float needs a dot and a signed exponent: 1.0e-3 and 1.0e+5, not 1e-3.
    exponent = math.floor(math.log10(abs(value)))
    mantissa = round(value / 10**exponent, 6)
    if abs(mantissa) >= 10:  # rounding carried: 9.9999995e-4 is 1.0e-3
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{float(mantissa)!r}e{exponent:+d}"


def check_target(path: Path, force: bool) -> None:
    """Before any work: the file must not exist (unless --force) and its folder must."""
    if path.exists() and not force:
        raise AnalysisError(f"--emit-grid {path}: exists; --force to overwrite it")
    if not path.parent.is_dir():
        raise AnalysisError(f"--emit-grid {path}: no folder {path.parent}")


def write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # never a half-written sweep file

"""A sweep file: its text, its name, its axes and their levels, its question. No engine, no wandb.

The levels of each parameter are the ones wandb's grid engine (`sweeps==0.2.0`,
`grid_search.py`) hands out: `values` as listed, `value` alone, `int_uniform` as
`range(min, max + 1)` and `q_uniform` as `numpy.arange(min, max, q)`, which drops the maximum
when it falls on a step. The engine's import costs about 0.6 s (scipy): the analysis and the
agents read a sweep file through this module instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class SweepError(ValueError):
    """A bad sweep file; the message names the file, the key and the reason (exit code 2)."""


@dataclass(frozen=True)
class Axis:
    """One parameter and its levels, in the order the engine hands them out."""

    name: str
    kind: str  # values, value, int_uniform or q_uniform
    levels: tuple[Any, ...]

    def describe(self) -> str:
        return f"{self.name} ({self.kind}): {', '.join(str(v) for v in self.levels)}"


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice is an error rather than the last one wins."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (lines {seen[key]} and {line})",
                key_node.start_mark,
            )  # fmt: skip
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_sweep(path: Path | str) -> tuple[str, dict[str, Any]]:
    """Read and parse a sweep YAML into (text, config); the engine's checks are the caller's."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SweepError(f"{path}: cannot read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = raw[err.start : err.start + 1].hex()
        raise SweepError(f"{path}: not UTF-8 text (byte 0x{bad} at offset {err.start})") from None
    try:
        config = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML: {_yaml_reason(err)}") from None
    if not isinstance(config, dict):
        raise SweepError(f"{path}: expected a mapping of sweep keys, got {type(config).__name__}")
    return text, config


def _yaml_reason(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or first_line(err)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def axes(config: Mapping[str, Any]) -> list[Axis]:
    """Every parameter with its levels, in file order; SweepError for a non-grid parameter."""
    out = []
    for name, spec in (config.get("parameters") or {}).items():
        kind = _kind(spec)
        if kind == "values":
            levels: tuple[Any, ...] = tuple(spec["values"] or ())
        elif kind == "value":
            levels = (spec["value"],)
        elif kind == "int_uniform":
            levels = tuple(range(int(spec["min"]), int(spec["max"]) + 1))
        elif kind == "q_uniform":
            import numpy as np  # only here: the engine's own arithmetic, float steps included

            levels = tuple(np.arange(spec["min"], spec["max"], spec.get("q", 1.0)).tolist())
        else:
            raise SweepError(
                f"parameters.{name}: {kind} is not a grid parameter; a grid takes values, "
                "value, int_uniform or q_uniform"
            )
        out.append(Axis(name, kind, levels))
    return out


def _kind(spec: Any) -> str:
    """How the engine reads a parameter's spec (sweeps.params: min and max that are both
    integers make an int_uniform when no distribution is named)."""
    if not isinstance(spec, dict):
        return "not a mapping"
    if "values" in spec:
        return "values"
    if "value" in spec:
        return "value"
    if "distribution" in spec:
        return str(spec["distribution"])
    low, high = spec.get("min"), spec.get("max")
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
    return "int_uniform" if ints else "uniform"


def grid_size(config: Mapping[str, Any]) -> int:
    """Points of the grid, counted from the levels: nothing is enumerated."""
    return math.prod(len(a.levels) for a in axes(config))


def varied(config: Mapping[str, Any]) -> list[str]:
    """Parameters with more than one level, in file order (seed included)."""
    return [a.name for a in _grid_axes(config) if len(a.levels) > 1]


def _grid_axes(config: Mapping[str, Any]) -> list[Axis]:
    try:
        return axes(config)
    except SweepError:  # a scan's distributions: no grid axes to name
        return []


# Scans propose their points as they run (localsweep/scan.py); grids are enumerated up front.
SCAN_METHODS = ("random", "bayes")


def is_scan(config: Mapping[str, Any]) -> bool:
    return config.get("method") in SCAN_METHODS


def run_cap(config: Mapping[str, Any]) -> int:
    """How many points a scan proposes: its `run_cap` (required, checked at create)."""
    return int(config["run_cap"])


def encode(point: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{k: v} as the engine and the param file spell a run's values: {k: {"value": v}}."""
    return {k: {"value": v} for k, v in point.items()}


def decode(config: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `encode`; plain values (not {"value": v}) pass as they are."""
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in config.items()}


def sweep_name(path: Path | str, config: Mapping[str, Any]) -> str:
    """Stable name: the YAML's `name:` (else the file's stem) and a hash of its config, so
    `run` on the same content resumes and an edited one is a new sweep."""
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:6]
    base = str(config.get("name") or Path(path).stem)
    # The name becomes a folder of logs: keep it to one path segment.
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "sweep"
    return f"{base}-{digest}"


def base_name(name: str) -> str:
    """`lr_optimizer-3f4885` -> `lr_optimizer`: what every version of one file shares."""
    return name.rsplit("-", 1)[0]


def metric(config: Mapping[str, Any]) -> tuple[str, str] | None:
    """The sweep's `metric:` as (name, goal), goal "maximize" or "minimize"; None when unset."""
    spec = config.get("metric")
    if not isinstance(spec, dict) or not spec.get("name"):
        return None
    return str(spec["name"]), str(spec.get("goal", "minimize"))


def question(yaml_text: str, config: Mapping[str, Any]) -> str:
    """The study's question, in full: its `description`, else the first paragraph of the
    YAML's leading comment (up to a bare `#` line). A `Grid: ...` line is left out: it states
    the design (levels, seeds, run count), not what the study asks."""
    if config.get("description"):
        return " ".join(str(config["description"]).split())
    lines: list[str] = []
    for line in yaml_text.splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text:
            if lines:
                break  # the end of the first paragraph
            continue
        if not re.match(r"grid\s*:", text, re.IGNORECASE):
            lines.append(text)
    return " ".join(lines)


def looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__

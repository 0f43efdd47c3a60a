"""Sweep YAML in, grid points out, through wandb's own sweep engine (`sweeps==0.2.0`).

Using the engine rather than itertools.product means the local grid is the one the wandb
backend would hand out: same order, same handling of `value`/`values`/`int_uniform`/`q_uniform`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # sweeps 0.2.0 uses pydantic v1 config names; pydantic v2 warns once at import.
    warnings.simplefilter("ignore")
    from sweeps.config.cfg import validator as schema_validator

    import sweeps

from sweepmap.config import Config, ConfigError
from sweepmap.sweepfile import SweepError, first_line, looks_numeric, read_sweep

# Grid points are enumerated up to this many; a larger grid is a typo, not a study.
MAX_GRID = 10_000


def load_sweep(path: Path | str) -> tuple[str, dict[str, Any]]:
    """Read and check a sweep YAML; returns (text, config). Raises SweepError."""
    text, config = read_sweep(path)
    check_sweep(config, str(path))
    return text, config


def check_sweep(config: dict[str, Any], where: str = "sweep") -> None:
    """wandb's schema check, the grid enumeration, and every point as a train.py Config."""
    # The engine's own list of violations drops where they are; its validator keeps the path.
    errors = sorted(schema_validator.iter_errors(config), key=lambda e: len(e.absolute_path))
    if errors:
        key = ".".join(str(p) for p in errors[0].absolute_path) or "top level"
        raise SweepError(f"{where}: {key}: {errors[0].message}")
    try:
        violations = sweeps.schema_violations_from_proposed_config(config)
    except ValueError as err:
        violations = [str(err)]
    if violations:
        raise SweepError(f"{where}: parameters: {violations[0]}")
    if config.get("method") != "grid":
        raise SweepError(f"{where}: method: {config.get('method')!r}: sweepmap studies use grid")
    for name, spec in config.get("parameters", {}).items():
        for key in ("value", "values"):
            values = spec.get(key) if key == "values" else [spec.get(key)]
            for v in values or []:
                if isinstance(v, str) and looks_numeric(v):
                    raise SweepError(
                        f"{where}: parameters.{name}.{key}: {v!r} is a string; PyYAML reads "
                        f"'1e-3' as text: write 1.0e-3"
                    )
    try:
        points = all_points(config)
    except ValueError as err:
        raise SweepError(f"{where}: {first_line(err)}") from None
    for point in points:
        try:
            Config.from_mapping(point)
        except ConfigError as err:
            raise SweepError(f"{where}: parameters: {err}") from None


def all_points(config: dict[str, Any]) -> list[dict[str, Any]]:
    runs = sweeps.next_runs(config, [], validate=False, n=MAX_GRID + 1)
    points = [_flat(r.config) for r in runs if r is not None]
    if len(points) > MAX_GRID:
        raise ValueError(f"grid has more than {MAX_GRID} points")
    return points


def grid_size(config: dict[str, Any]) -> int:
    return len(all_points(config))


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v["value"] for k, v in config.items()}

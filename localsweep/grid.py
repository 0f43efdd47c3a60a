"""Sweep YAML in, grid points out, through wandb's own sweep engine (`sweeps==0.2.0`).

Using the engine rather than itertools.product means the local grid is the one the wandb
backend would hand out: same order, same handling of `value`/`values`/`int_uniform`/`q_uniform`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import yaml

with warnings.catch_warnings():
    # sweeps 0.2.0 uses pydantic v1 config names; pydantic v2 warns once at import.
    warnings.simplefilter("ignore")
    from sweeps.config.cfg import validator as schema_validator

    import sweeps

from localsweep.errors import SweepError
from sweepmap.config import Config, ConfigError

# Grid points are enumerated up to this many; a larger grid is a typo, not a study.
MAX_GRID = 10_000


def load_sweep(path: Path | str) -> tuple[str, dict[str, Any]]:
    """Read and check a sweep YAML; returns (text, config). Raises SweepError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SweepError(f"{path}: cannot read ({err.strerror})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML ({_first_line(err)})") from None
    if not isinstance(config, dict):
        raise SweepError(f"{path}: expected a mapping of sweep keys, got {type(config).__name__}")
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
                if isinstance(v, str) and _looks_numeric(v):
                    raise SweepError(
                        f"{where}: parameters.{name}.{key}: {v!r} is a string; PyYAML reads "
                        f"'1e-3' as text: write 1.0e-3"
                    )
    try:
        points = all_points(config)
    except ValueError as err:
        raise SweepError(f"{where}: {_first_line(err)}") from None
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


def sweep_name(path: Path | str, config: dict[str, Any]) -> str:
    """Stable name: the file's stem and a hash of its config, so `run` again resumes it."""
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:6]
    return f"{Path(path).stem}-{digest}"


def varied(config: dict[str, Any]) -> list[str]:
    """Parameters with more than one value, in file order (seed included)."""
    params = config.get("parameters", {})
    return [k for k, spec in params.items() if len(spec.get("values", [])) > 1]


def question(yaml_text: str, config: dict[str, Any]) -> str:
    """The study's question: its `description`, else the YAML's leading comment."""
    if config.get("description"):
        return str(config["description"]).strip()
    lines = []
    for line in yaml_text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(line for line in lines if line)


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v["value"] for k, v in config.items()}


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__

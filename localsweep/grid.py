"""Sweep YAML in, grid points out, through wandb's own sweep engine (`sweeps==0.2.0`).

Using the engine rather than itertools.product means the local grid is the one the wandb
backend would hand out: same order, same handling of `value`/`values`/`int_uniform`/`q_uniform`.
A scan (`method: random` or `bayes`) has no grid: its points are proposed as it runs
(localsweep/scan.py), and it is checked here on points that stand for its space.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # sweeps 0.2.0 uses pydantic v1 config names; pydantic v2 warns once at import.
    warnings.simplefilter("ignore")
    from sweeps.config.cfg import validator as schema_validator
    from sweeps.grid_search import grid_search_next_runs

    import sweeps

from localsweep import preflight, scan
from localsweep.spec_errors import spec_error
from sweepmap.config import Config, ConfigError
from sweepmap.sweepfile import SweepError, axes, decode, grid_size, looks_numeric, read_sweep

# Grid points are enumerated up to this many; a larger grid is a typo, not a study.
MAX_GRID = 10_000


def load_sweep(path: Path | str) -> tuple[str, dict[str, Any]]:
    """Read and check a sweep YAML; returns (text, config). Raises SweepError."""
    text, config = read_sweep(path)
    check_sweep(config, str(path))
    return text, config


def check_sweep(config: dict[str, Any], where: str = "sweep", cwd: Path | None = None) -> None:
    """Everything about the file that can be known before a run: wandb's schema, what a grid
    study allows, the program, command and metric, and every point as a train.py Config."""
    cwd = cwd or Path.cwd()
    try:
        _check_parameters(config)
        if scan.is_scan(config):
            scan.check_scan(config)
        else:
            _check_grid_study(config)
        _check_schema(config)
        if scan.is_scan(config):
            scan.check_stopping(config)
            points = scan.sample_points(config)
        elif grid_size(config) > MAX_GRID:  # counted from the levels: nothing is enumerated
            raise SweepError(f"parameters: {grid_size(config):,} grid points; at most {MAX_GRID:,}")
        else:
            points = all_points(config)
        preflight.check_program(config, cwd)
        preflight.check_metric(config, cwd)
        preflight.check_command(config, points[0] if points else {}, cwd)
    except SweepError as err:
        raise SweepError(f"{where}: {err}") from None
    if not preflight.runs_train_py(config, cwd):
        return  # another program's parameters are its own business
    for point in points:
        try:
            Config.from_mapping(point)
        except ConfigError as err:
            raise SweepError(f"{where}: parameters: {err}") from None


def _check_grid_study(config: dict[str, Any]) -> None:
    """The keys a one-budget grid study refuses, with the reason, before the schema speaks."""
    if "early_terminate" in config:
        raise SweepError(
            "early_terminate: refused in a grid study: stopped runs would mix training "
            "budgets in one heatmap (one heatmap = one budget); only scans (method: random "
            "or bayes) may stop runs early"
        )


def _check_parameters(config: dict[str, Any]) -> None:
    """What PyYAML and the engine would let through silently, in a grid or a scan."""
    for name, spec in (config.get("parameters") or {}).items():
        if not isinstance(spec, dict):
            continue  # the engine's schema names it
        if "parameters" in spec:
            raise SweepError(f"parameters.{name}: nested parameters; use flat keys")
        for key in ("value", "values", "min", "max", "q"):
            values = spec.get(key) if key == "values" else [spec.get(key)]
            if not isinstance(values, list):
                continue
            for v in values:
                if isinstance(v, str) and looks_numeric(v):
                    raise SweepError(
                        f"parameters.{name}.{key}: {v!r} is a string; PyYAML reads "
                        "'1e-3' as text: write 1.0e-3"
                    )
            repeated = [v for i, v in enumerate(values) if v in values[:i]]
            if repeated:
                raise SweepError(f"parameters.{name}.values: {repeated[0]!r} is listed twice")


def _check_schema(config: dict[str, Any]) -> None:
    cap = config.get("run_cap")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise SweepError(f"run_cap: {cap!r}: expected a whole number >= 1")
    # The backend takes run_cap; the engine's schema (sweeps 0.2.0) does not know it.
    config = {k: v for k, v in config.items() if k != "run_cap"}
    # The engine's own list of violations drops where they are; its validator keeps the path.
    errors = sorted(schema_validator.iter_errors(config), key=lambda e: len(e.absolute_path))
    if errors:
        path, schema = list(errors[0].absolute_path), schema_validator.schema
        if len(path) == 2 and path[0] == "parameters":  # one parameter: say which form it missed
            raise SweepError(spec_error(str(path[1]), errors[0].instance, errors[0], schema))
        key = ".".join(str(p) for p in path) or "top level"
        raise SweepError(f"{key}: {errors[0].message}")
    try:
        violations = sweeps.schema_violations_from_proposed_config(config)
    except ValueError as err:
        violations = [str(err)]
    if violations:
        raise SweepError(f"parameters: {violations[0]}")
    if config.get("method") not in ("grid", *scan.METHODS):
        raise SweepError(f"method: {config.get('method')!r}; allowed: grid, random, bayes")
    if not scan.is_scan(config):
        axes(config)  # a grid parameter of a kind the engine would refuse only when enumerating


def all_points(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid in the engine's order, capped by `run_cap` as the backend caps a sweep; a
    scan has none up front."""
    if scan.is_scan(config):
        return []
    cap = int(config.get("run_cap") or MAX_GRID)
    engine = {k: v for k, v in config.items() if k != "run_cap"}
    if not engine.get("parameters"):  # the engine's own refusal (ValueError), as next_runs says it
        sweeps.next_runs(engine, [], validate=False)
    # What `sweeps.next_runs` calls for a grid, without the import of its other searches: the
    # bayes one loads scikit-learn, 0.5 s of every `localsweep run`.
    runs = grid_search_next_runs([], engine, validate=False, n=min(cap, MAX_GRID))
    return [decode(r.config) for r in runs if r is not None]

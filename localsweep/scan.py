"""Scans: `method: random` or `bayes`, and `early_terminate: {type: hyperband}`, through
wandb's own engine (`sweeps==0.2.0`): `next_run` with the sweep's history proposes each point
when an agent asks for one, `stop_runs` says after each epoch whether a run is to stop.

A scan is for choosing the pair to study, never for a heatmap: its runs differ in budget (see
analysis/guards.py). The engine loads only here, in the agents of a scan (~0.5 s of scipy).
"""

from __future__ import annotations

import hashlib
import random
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from localsweep.rows import Run
from sweepmap.sweepfile import SCAN_METHODS, SweepError, decode, encode, is_scan

with warnings.catch_warnings():
    # sweeps 0.2.0 uses pydantic v1 config names; pydantic v2 warns once at import.
    warnings.simplefilter("ignore")
    import sweeps

METHODS = SCAN_METHODS
# How many sampled points stand for a scan's space when it is checked before any run.
SAMPLES = 256
# The engine's names for our states. A stopped run goes in as `killed`, so that bayes imputes
# its metric by the sweep's `impute` rule instead of reading an under-trained value as a result.
# crashed and error runs run again at the same point: that point counts as pending meanwhile.
ENGINE_STATE = {
    "pending": "pending", "running": "running", "finished": "finished", "failed": "failed",
    "stopped": "killed", "crashed": "pending", "error": "pending",
}  # fmt: skip
History = Callable[[str], list[dict[str, Any]]]


def _engine(config: Mapping[str, Any]) -> dict[str, Any]:
    # The backend takes run_cap; the engine's schema (sweeps 0.2.0) does not know it.
    return {k: v for k, v in config.items() if k != "run_cap"}


def _plain(value: Any) -> Any:
    """A proposal as JSON keeps it: numpy scalars as Python's, and floats without the noise of
    the engine's arithmetic (q_uniform's 0.6000000000000001 is 0.6). The stored value is the
    one that trains and the one the analysis reads."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.12g}")
    return value


def _seed(sweep: str, index: int) -> int:
    """Proposal `index` of a sweep draws from its own seed: a scan re-created from the same
    file proposes the same points (bayes: given the same results)."""
    digest = hashlib.sha256(f"{sweep}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """The engine draws from Python's `random` (random search's `sample`) and numpy's global
    generator (bayes), both of which every run reseeds with its own seed: without this, each
    proposal after a run would repeat the one before."""
    states = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])


def engine_runs(runs: Sequence[Run], history: History) -> list[sweeps.SweepRun]:
    """The store's runs as the engine reads a sweep's runs from the backend."""
    out = []
    for run in runs:
        # By the fields' aliases: under pydantic 2, SweepRun's v1 `allow_population_by_field_
        # name` is not honoured, and `history=` would be dropped without a word.
        fields = {"summaryMetrics": run.summary, "sampledHistory": history(run.id)}
        state = ENGINE_STATE[run.state]
        out.append(sweeps.SweepRun(name=run.id, state=state, config=encode(run.config), **fields))
    return out


def propose(
    config: Mapping[str, Any], sweep: str, index: int, runs: Sequence[Run], history: History
) -> dict[str, Any]:
    """The engine's next point for this scan, given every run so far (bayes reads them)."""
    with warnings.catch_warnings(), _seeded(_seed(sweep, index)):
        warnings.simplefilter("ignore")  # the engine's numpy and sklearn warnings: not ours
        found = sweeps.next_run(_engine(config), engine_runs(runs, history), validate=False)
    if found is None:
        raise SweepError(f"method: {config['method']}: the engine proposed no point")
    return {k: _plain(v) for k, v in decode(found.config).items()}


def stop_reason(
    config: Mapping[str, Any], run_id: str, runs: Sequence[Run], history: History
) -> str | None:
    """Why the sweep's early_terminate rule stops this running run now, or None."""
    if "early_terminate" not in config:
        return None
    ours = engine_runs(runs, history)
    stop = {r.name for r in sweeps.stop_runs(_engine(config), ours, validate=False)}
    if run_id not in stop:
        return None
    me = next(r for r in ours if r.name == run_id)
    info = me.early_terminate_info or {}
    name, goal = config["metric"]["name"], config["metric"].get("goal", "minimize")
    values = me.metric_history(name, filter_invalid=True)
    best = max(values) if goal == "maximize" else min(values)
    sign = -1.0 if goal == "maximize" else 1.0
    bands = [b for b in info.get("bands", []) if b < len(values)]
    band = bands[-1] if bands else None
    threshold = dict(zip(info.get("bands", []), info.get("thresholds", []), strict=False))
    bar = sign * float(threshold[band]) if band is not None else float("nan")
    worse = "below" if goal == "maximize" else "above"
    # The engine compares at history index `band`: the runs' value at epoch band + 1.
    at = band + 1 if band is not None else "?"
    return (
        f"hyperband: best {name} {best:.4g} after {len(values)} epochs is {worse} "
        f"{bar:.4g}, the threshold at epoch {at} (engine band {band}) of the runs there"
    )


def sample_points(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Points that stand for a scan's space before any run, to check each as a train.py
    Config: every listed value and each bound of every distribution, the others at a random
    draw, and SAMPLES random draws for what the keys allow only together."""
    space = {**_engine(config), "method": "random"}
    with warnings.catch_warnings(), _seeded(0):
        warnings.simplefilter("ignore")
        draws = sweeps.next_runs(space, [], validate=False, n=SAMPLES)
    drawn = [{k: _plain(v) for k, v in decode(r.config).items()} for r in draws]
    # The bounds first, around a point of lower bounds and first values: a refusal then names
    # a value the user wrote, not a draw near it.
    specs = (config.get("parameters") or {}).items()
    base = {name: _plain(_extremes(spec)[0]) for name, spec in specs if _extremes(spec)}
    bounds = [{**base, name: _plain(v)} for name, spec in specs for v in _extremes(spec)]
    return [*bounds, *drawn]


def _extremes(spec: Mapping[str, Any]) -> list[Any]:
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    return [spec[k] for k in ("min", "max") if k in spec]


def check_scan(config: Mapping[str, Any]) -> None:
    """What a scan needs, said before the engine's schema would say it less clearly;
    SweepError names the key."""
    method = config.get("method")
    cap = config.get("run_cap")
    if cap is None:
        raise SweepError(
            f"run_cap: missing; a {method} scan proposes points without end: give how many "
            "runs it is to have (run_cap: 40)"
        )
    terminate = config.get("early_terminate")
    if terminate is not None:
        kind = terminate.get("type") if isinstance(terminate, Mapping) else terminate
        if kind != "hyperband":
            raise SweepError(f"early_terminate.type: {kind!r}; allowed: hyperband")
        if not config.get("metric"):
            raise SweepError("early_terminate: hyperband needs the sweep's metric (name, goal)")
    if method == "bayes" and not config.get("metric"):
        raise SweepError("metric: method bayes needs the metric it is to optimise (name, goal)")


def check_stopping(config: Mapping[str, Any]) -> None:
    """The engine's own reading of early_terminate (bands it can compute), after its schema."""
    if "early_terminate" in config:
        try:
            sweeps.stop_runs(_engine(config), [], validate=False)
        except (ValueError, KeyError, TypeError) as err:
            raise SweepError(f"early_terminate: {err}") from None


__all__ = [
    "METHODS", "check_scan", "check_stopping", "is_scan", "propose", "sample_points",
    "stop_reason",
]  # fmt: skip

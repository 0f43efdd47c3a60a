"""What every run of a sweep needs, checked before any run is claimed.

At create (`check_program`, `check_command`, `check_metric`), from the file alone; in the
agent (`check_data`), the sweep's data, loaded once. A sweep that cannot run stops at once
with one line: no run is created and no point is marked failed.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.contract import MACROS, render_command, unknown_macros, write_params
from sweepmap import keys
from sweepmap.args import cli_values
from sweepmap.config import Config, ConfigError
from sweepmap.envfile import PROJECT_ROOT
from sweepmap.sweepfile import SweepError

TRAIN_PY = PROJECT_ROOT / "train.py"
# What train.py logs: a sweep's metric must be one of these.
METRICS = (*keys.EPOCH_METRICS, *keys.BEST_OF.values())


def program_of(config: Mapping[str, Any], cwd: Path) -> Path:
    """The program a run starts: `program:` against the working folder; a `train.py` that is
    not there is sweepmap's own (what `python -m localsweep` runs from any folder)."""
    program = Path(str(config.get("program") or "train.py"))
    here = program if program.is_absolute() else cwd / program
    if not here.exists() and program == Path("train.py"):
        return TRAIN_PY
    return here


def runs_train_py(config: Mapping[str, Any], cwd: Path) -> bool:
    return program_of(config, cwd).resolve() == TRAIN_PY.resolve()


def effective_mode(config: Mapping[str, Any], requested: str, cwd: Path) -> tuple[str, str]:
    """(mode, why it is not the one requested): in-process runs sweepmap's train.py only."""
    if requested == "process":
        return "process", ""
    if config.get("command"):
        return "process", "the sweep has its own `command:`: one process per run"
    if not runs_train_py(config, cwd):
        program = config.get("program")
        return "process", f"the sweep's program is {program}: one process per run"
    return "inprocess", ""


def check_program(config: Mapping[str, Any], cwd: Path) -> None:
    path = program_of(config, cwd)
    if not path.is_file():
        raise SweepError(f"program: {config.get('program')}: no such file in {cwd}")


def check_command(config: Mapping[str, Any], point: Mapping[str, Any], cwd: Path) -> None:
    """The command's macros are wandb's, and for train.py it renders values train.py reads
    back as the grid point (with the param file beside them, as at run time)."""
    command = config.get("command")
    if command is None:
        return
    if not isinstance(command, list) or not command:
        raise SweepError(f"command: expected a list such as {list(('${env}', '${interpreter}'))}")
    unknown = unknown_macros(command)
    if unknown:
        raise SweepError(
            f"command: ${{{unknown[0]}}} is not a wandb agent macro (it would be dropped); "
            f"allowed: {', '.join('${' + m + '}' for m in MACROS)}, ${{envvar:NAME}}"
        )
    if not runs_train_py(config, cwd):
        return
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "config.yaml"
        write_params(params, point)
        argv = render_command(config, point, Path(tmp) / "config.json")
        rest = _after_program(argv)
        if rest is None:
            return  # the command does not start train.py itself: nothing to read back
        shown = " ".join(rest)
        try:
            read = Config.from_mapping(cli_values(rest, str(params)))
        except ConfigError as err:
            raise SweepError(f"command: renders `{shown}`, which train.py refuses: {err}") from None
    if read != Config.from_mapping(point):
        raise SweepError(f"command: renders `{shown}`, which train.py reads as other values")


def _after_program(argv: Sequence[str]) -> list[str] | None:
    for i, token in enumerate(argv):
        if Path(token).name == "train.py":
            return list(argv[i + 1 :])
    return None


def check_metric(config: Mapping[str, Any], cwd: Path) -> None:
    metric = config.get("metric")
    if not isinstance(metric, dict) or not runs_train_py(config, cwd):
        return
    name = metric.get("name")
    if name not in METRICS:
        close = difflib.get_close_matches(str(name), METRICS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SweepError(
            f"metric.name: {name!r} is not logged by train.py{hint}; allowed: {', '.join(METRICS)}"
        )


class Unavailable(SweepError):
    """What the machine lacks for the sweep (its data): exit code 3, not bad input's 2."""


def check_data(points: Sequence[Mapping[str, Any]]) -> None:
    """Load each dataset the grid uses (as train.py would, so an in-process agent keeps it),
    and check the device each point asks for; SweepError with the loader's own line (which
    names the fix) when one cannot be had: Unavailable for the data, which this machine has
    not got (an environment's problem), SweepError for what the sweep asks of it."""
    import train
    from data import DataUnavailable

    seen: set[tuple[Any, ...]] = set()
    for point in points:
        cfg = Config.from_mapping(point)
        key = (cfg.dataset, cfg.split_seed, cfg.as_sequence, cfg.device, cfg.bf16, cfg.threads)
        if key in seen:
            continue
        seen.add(key)
        try:
            train.prepare(point)
        except DataUnavailable as err:
            raise Unavailable(f"dataset={cfg.dataset}: {err}") from None
        except ConfigError as err:  # what this machine cannot do: bf16 or cuda without a GPU
            raise SweepError(f"parameters: {err}") from None

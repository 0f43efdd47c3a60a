"""Shared fixtures: an isolated offline wandb, the repo root, the gestures zip, tiny sweeps."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GESTURES_ZIP = ROOT.parent / "shared" / "data" / "gestures-dataset.zip"


# A wandb agent's variables, which must not leak from the environment the tests run in.
UNSET = ("WANDB_API_KEY", "WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH")


def offline_vars(root: Path) -> dict[str, str]:
    """The variables under which wandb runs offline and writes only under root."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(root),
        "WANDB_CONFIG_DIR": str(root / ".config" / "wandb"),
        "WANDB_CACHE_DIR": str(root / ".cache" / "wandb"),
        "WANDB_DATA_DIR": str(root / ".cache" / "wandb-data"),
        "WANDB_SILENT": "true",
        "SWEEPMAP_DATA_DIR": str(root / "data-cache"),
        "PYTHONUNBUFFERED": "1",
    }


def offline_env(root: Path) -> dict[str, str]:
    """What wandb_env returns, for processes that a module-scoped fixture starts."""
    return {k: v for k, v in os.environ.items() if k not in UNSET} | offline_vars(root)


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment in which wandb runs offline and writes only under tmp_path."""
    env = offline_vars(tmp_path)
    for key in UNSET:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **env}


@pytest.fixture
def gestures_zip() -> Path:
    if not GESTURES_ZIP.exists():
        pytest.skip(f"gestures zip not found at {GESTURES_ZIP}")
    return GESTURES_ZIP


def run_py(args: list[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 300):
    """Run `python ARGS` in the project's interpreter; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def write_sweep(path: Path, parameters: dict, **extra) -> Path:
    """A grid sweep YAML over `parameters` ({name: [values]} or {name: value})."""
    params = {
        k: {"values": v} if isinstance(v, list) else {"value": v} for k, v in parameters.items()
    }
    config = {"program": "train.py", "method": "grid", "parameters": params, **extra}
    config.setdefault("metric", {"name": "val/accuracy", "goal": "maximize"})
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


Work = Callable[[Path], Any]


@dataclass
class Ran:
    folder: Path  # the folder the work ran in: its test's tmp_path
    future: Future[Any]

    def result(self) -> Any:
        """What the work returned; what it raised, raised here."""
        return self.future.result()


class TwoAtATime:
    """The processes that some of a module's tests only look at the outcome of, run two at a time.

    Each test's work is a function of a folder of its own (`@TWO.of("test_name")`) that runs
    real processes there, as the test itself did before, with their own offline wandb
    (offline_env) or fake. A module-scoped fixture returns `TWO.run(request, tmp_path_factory)`:
    the work of this module's tests that are to run, in the order it was defined (longest
    first, where it matters), two at a time, all of it ended. A training process uses one
    thread and whatever starts it mostly waits, so on 2 cores two take little more than one.
    A test that times something must not use it, nor run while it does.
    """

    def __init__(self) -> None:
        self.work: dict[str, Work] = {}

    def of(self, test: str) -> Callable[[Work], Work]:
        def register(fn: Work) -> Work:
            self.work[test] = fn
            return fn

        return register

    def run(
        self, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> dict[str, Ran]:
        here = request.module
        wanted = {i.originalname for i in request.session.items if isinstance(i, pytest.Function)
                  and i.module is here}  # fmt: skip
        with ThreadPoolExecutor(2) as pool:
            ran: dict[str, Ran] = {}
            for test, fn in self.work.items():
                if test in wanted:
                    folder = tmp_path_factory.mktemp(test.removeprefix("test_")[:30])
                    ran[test] = Ran(folder, pool.submit(fn, folder))
            wait([r.future for r in ran.values()])
        return ran

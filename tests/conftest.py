"""Shared fixtures: an isolated offline wandb, the repo root, the gestures zip, tiny sweeps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
Key = tuple[str, str]  # (module, test function)


@dataclass
class Ran:
    folder: Path  # the folder the work ran in: its test's tmp_path
    future: Future[Any]

    def result(self) -> Any:
        """What the work returned; what it raised, raised here."""
        return self.future.result()


class TwoAtATime:
    """The processes that some tests only look at the outcome of, run two at a time.

    A test's work is a function of a folder of its own, registered in the test's module with
    `@TWO.of("test_name", seconds)` (or "test_name[id]" for one case of a parametrized test);
    it runs the real processes that the test itself ran before
    (with their own offline wandb, offline_env, or their own fake) and returns what the test
    looks at. The first test that asks for the `ran` fixture starts the work of every test that
    is to run in this session, two at a time, longest first (`seconds`: about what it takes
    alone), and waits until all of it has ended; each test then gets its own from `ran`. A
    process trains on one thread and whatever starts it mostly waits, so on 2 cores two take
    little more than one. No other test runs meanwhile: a test that times something must not
    be one of these. `--durations` also lists how long each work took.
    """

    def __init__(self) -> None:
        self.work: dict[Key, tuple[float, Work]] = {}
        self.ran: dict[Key, Ran] = {}
        self.seconds: dict[Key, float] = {}

    def of(self, test: str, seconds: float) -> Callable[[Work], Work]:
        def register(fn: Work) -> Work:
            self.work[(fn.__module__, test)] = (seconds, fn)
            return fn

        return register

    def run(self, items: list[pytest.Item], tmp_path_factory: pytest.TempPathFactory) -> None:
        tests = [i for i in items if isinstance(i, pytest.Function)]
        wanted = {(i.module.__name__, name) for i in tests for name in (i.originalname, i.name)}
        todo = sorted((k for k in self.work if k in wanted), key=lambda k: -self.work[k][0])
        with ThreadPoolExecutor(2) as pool:
            for key in todo:
                folder = tmp_path_factory.mktemp(key[1].removeprefix("test_")[:30])
                self.ran[key] = Ran(folder, pool.submit(self._timed, key, folder))
            wait([r.future for r in self.ran.values()])

    def _timed(self, key: Key, folder: Path) -> Any:
        start = time.monotonic()
        try:
            return self.work[key][1](folder)
        finally:
            self.seconds[key] = time.monotonic() - start


TWO = TwoAtATime()


@pytest.fixture(scope="session")
def _two_at_a_time(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    TWO.run(request.session.items, tmp_path_factory)
    return TWO


@pytest.fixture
def ran(request: pytest.FixtureRequest, _two_at_a_time: TwoAtATime) -> Ran:
    """This test's work (TWO.of), ended: its folder and what it returned."""
    module, ran = request.module.__name__, _two_at_a_time.ran
    return ran.get((module, request.node.name)) or ran[(module, request.function.__name__)]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if TWO.seconds and config.option.durations is not None:
        terminalreporter.write_sep("=", "work run two at a time before its tests (TWO.of)")
        for (module, test), took in sorted(TWO.seconds.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{took:.2f}s {module.replace('.', '/')}.py::{test}")

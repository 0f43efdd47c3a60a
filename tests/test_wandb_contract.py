"""Contract test: the real wandb 0.31 CLI and public API against the loopback fake.

`wandb sweep` creates a grid sweep, `wandb agent --count N` runs a program once per grid point
(as a subprocess, the way the real agent does), and `wandb.Api().runs(...)` reads the runs back.
Everything runs with an isolated HOME / WANDB_DIR / TMPDIR under tmp_path and talks only to
tests/fakewandb.py on 127.0.0.1. `run_sweep_cli` takes the program (and optional command) as
parameters so the same flow can drive train.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import wandb
import yaml

from tests.fakewandb import FakeWandb

VENV_BIN = Path(sys.executable).parent  # the agent runs `python` from PATH: this one first
ANSI = re.compile(r"\x1b\[[0-9;]*m")

STAND_IN = """\
import json, os, sys
import wandb

print("ARGV " + json.dumps([os.environ["WANDB_RUN_ID"], sys.argv[1:]]), flush=True)
run = wandb.init()
lr = float(run.config["lr"])
for step in range(3):
    run.log({"val/accuracy": 1 - lr - 0.1 * (2 - step)})
run.summary["best_val_accuracy"] = 1 - lr
run.finish()
"""

API_READER = """\
import json, sys
import wandb

path, sweep_id = sys.argv[1:3]
api = wandb.Api()
runs = api.runs(path, filters={"sweep": sweep_id}, per_page=50)
out = {
    "runs": [
        {"name": r.name, "state": r.state, "sweep": r.sweep_name, "config": r.config,
         "summary": {k: v for k, v in r.summary.items() if not k.startswith("_")}}
        for r in runs
    ],
    "via_sweep": sorted(r.name for r in api.sweep(f"{path}/{sweep_id}").runs),
}
print("RESULT " + json.dumps(out))
"""


@dataclass
class SweepOutcome:
    sweep_id: str
    path: str  # entity/project
    env: dict[str, str]
    agent_output: str


def isolated_env(fake: FakeWandb, workdir: Path, project: str) -> dict[str, str]:
    """os.environ without WANDB_*, pointed at the fake, with every wandb dir under workdir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    home, tmp = workdir / "home", workdir / "tmp"
    for d in (home, tmp):
        d.mkdir(parents=True, exist_ok=True)
    env.update(fake.env(project))
    env.update(
        HOME=str(home),
        TMPDIR=str(tmp),  # the CLI writes debug-cli.<user>.log here while WANDB_DIR lacks wandb/
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        WANDB_DIR=str(workdir),
        WANDB_CONFIG_DIR=str(home / ".config" / "wandb"),
        WANDB_CACHE_DIR=str(home / ".cache" / "wandb"),
        WANDB_DATA_DIR=str(home / ".local" / "wandb"),
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def run_sweep_cli(
    fake: FakeWandb,
    workdir: Path,
    parameters: dict[str, Any],
    program: str | Path,
    *,
    command: list[str] | None = None,
    count: int | None = None,
    project: str = "contract",
    extra_env: dict[str, str] | None = None,
    timeout: float = 180,
) -> SweepOutcome:
    """`wandb sweep` a grid over `parameters`, then `wandb agent --count N` it, both real CLIs.

    `program` (and `command`, wandb's macro list, e.g. ["${env}", "${interpreter}",
    "${program}", "${args}"]) go into the sweep YAML; the agent runs them with cwd=workdir.
    `count` defaults to the grid size; `extra_env` is added to the isolated environment.
    """
    env = isolated_env(fake, workdir, project) | (extra_env or {})
    config: dict[str, Any] = {"method": "grid", "program": str(program), "parameters": parameters}
    if command is not None:
        config["command"] = command
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(config))
    wandb_cli = [sys.executable, "-m", "wandb"]
    entity = fake.entity

    made = subprocess.run(
        [*wandb_cli, "sweep", "--project", project, "--entity", entity, "sweep.yaml"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    out = ANSI.sub("", made.stdout + made.stderr)
    assert made.returncode == 0, out
    found = re.search(r"Creating sweep with ID: (\w+)", out)
    assert found, out
    sweep_id = found.group(1)

    n = count if count is not None else len(fake_grid(parameters))
    agent = subprocess.run(
        [*wandb_cli, "agent", "--count", str(n), f"{entity}/{project}/{sweep_id}"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    agent_output = ANSI.sub("", agent.stdout + agent.stderr)
    assert agent.returncode == 0, agent_output
    return SweepOutcome(sweep_id, f"{entity}/{project}", env, agent_output)


def fake_grid(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid points, computed here independently of wandb's engine (value/values only)."""
    points: list[dict[str, Any]] = [{}]
    for key, spec in sorted(parameters.items()):
        values = spec["values"] if "values" in spec else [spec["value"]]
        points = [{**p, key: v} for p in points for v in values]
    return points


def read_runs_via_api(outcome: SweepOutcome) -> dict[str, Any]:
    """wandb.Api().runs(path, filters={"sweep": id}, per_page=50), in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", API_READER, outcome.path, outcome.sweep_id],
        env=outcome.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_sweep_agent_api_roundtrip(tmp_path: Path) -> None:
    assert wandb.__version__ == "0.31.0", "tests/fakewandb.py speaks wandb 0.31.0's protocol"
    program = tmp_path / "stand_in.py"
    program.write_text(textwrap.dedent(STAND_IN))
    parameters = {"lr": {"values": [0.1, 0.01]}, "batch_size": {"value": 16}}
    expected = fake_grid(parameters)

    with FakeWandb() as fake:
        outcome = run_sweep_cli(fake, tmp_path, parameters, program)
        api = read_runs_via_api(outcome)

    assert fake.unknown == [], fake.unknown  # wandb called something the fake does not serve
    assert list(fake.sweeps) == [outcome.sweep_id]
    runs = fake.sweep_runs(outcome.sweep_id)

    # Each grid point ran exactly once, in a run the backend knows, with that config.
    assert sorted((r.params for r in runs), key=repr) == sorted(expected, key=repr)
    printed = dict(
        json.loads(line.removeprefix("ARGV "))
        for line in outcome.agent_output.splitlines()
        if line.startswith("ARGV ")
    )
    assert sorted(printed) == sorted(r.name for r in runs)
    for r in runs:
        argv = sorted(f"--{k}={v}" for k, v in r.params.items())
        assert printed[r.name] == argv  # what the program got, `${args}` order: keys sorted
        assert json.loads(r.files["wandb-metadata.json"])["args"] == argv
        param_file = tmp_path / "wandb" / f"sweep-{outcome.sweep_id}" / f"config-{r.name}.yaml"
        assert yaml.safe_load(param_file.read_text())["lr"] == {"value": r.params["lr"]}
        # history and summary reached the backend through file_stream
        assert (r.state, r.exitcode) == ("finished", 0)
        lr = r.params["lr"]
        assert [row["_step"] for row in r.history] == [0, 1, 2]
        assert r.history[-1]["val/accuracy"] == pytest.approx(1 - lr)
        assert r.summary["val/accuracy"] == pytest.approx(1 - lr)
        assert r.summary["best_val_accuracy"] == pytest.approx(1 - lr)

    # ...and the public API reads the same runs back.
    by_name = {r.name: r for r in runs}
    assert sorted(x["name"] for x in api["runs"]) == sorted(by_name)
    assert api["via_sweep"] == sorted(by_name)
    for x in api["runs"]:
        run = by_name[x["name"]]
        assert (x["state"], x["sweep"]) == ("finished", outcome.sweep_id)
        assert x["config"] == run.params
        assert x["summary"]["val/accuracy"] == pytest.approx(1 - run.params["lr"])

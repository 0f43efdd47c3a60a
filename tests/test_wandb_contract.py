"""Contract test: the real wandb 0.31 CLI, train.py and the public API against the fake.

`wandb sweep` creates a grid sweep, `wandb agent --count N` runs train.py once per grid point
(as a subprocess, the way the real agent does), and `wandb.Api().runs(...)` reads the runs back.
Everything runs with an isolated HOME / WANDB_DIR / TMPDIR under tmp_path and talks only to
tests/fakewandb.py on 127.0.0.1. The helpers here (`create_sweep_cli`, `run_sweep_cli`,
`train_env`, `read_runs_via_api`) are shared with tests/test_agents.py and
tests/test_analysis_wandb.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import wandb
import yaml

from sweepmap import keys
from sweepmap.config import Config
from tests.conftest import ROOT, TWO, Ran
from tests.fakewandb import FakeWandb

VENV_BIN = Path(sys.executable).parent  # the agent runs `python` from PATH: this one first
TRAIN = ROOT / "train.py"
WANDB_CLI = [sys.executable, "-m", "wandb"]
# `wandb agent` itself, as `python -m wandb agent` runs it, but with its run loop's idle wait
# (wandb_agent.Agent.POLL_INTERVAL, 5 s between two looks at its runs and two heartbeats, set
# through agents/wandb_private.py) at 0.5 s: the same client code, train.py as its subprocess
# and the same requests to the fake, without the ~10 s that two runs spent idling (the
# in-process agent's heartbeat is shortened the same way).
AGENT_POLL_S = 0.5
WANDB_AGENT = [
    sys.executable,
    "-c",
    "from agents.wandb_private import set_wandb_agent_poll\n"
    f"assert set_wandb_agent_poll({AGENT_POLL_S}), 'wandb changed its agent loop'\n"
    "from wandb.cli import cli\n"
    "cli.cli(prog_name='python -m wandb')\n",
    "agent",
]
IN_PROCESS = [sys.executable, "-m", "agents"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")

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
# A summary holds nested objects too (the confusion chart's table reference): as dicts.
print("RESULT " + json.dumps(out, default=dict))
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


def train_env(workdir: Path) -> dict[str, str]:
    """What train.py needs besides wandb's variables: its data cache in tmp, one thread."""
    return {
        "SWEEPMAP_DATA_DIR": str(workdir / "data-cache"),
        "SWEEPMAP_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }


def create_sweep_cli(
    fake: FakeWandb,
    workdir: Path,
    parameters: dict[str, Any],
    program: str | Path,
    *,
    command: list[str] | None = None,
    project: str = "contract",
    extra_env: dict[str, str] | None = None,
    timeout: float = 180,
) -> SweepOutcome:
    """`wandb sweep` (the real CLI) a grid over `parameters`; no agent yet (agent_output "").

    `program` (and `command`, wandb's macro list, e.g. ["${env}", "${interpreter}",
    "${program}", "${args}"]) go into the sweep YAML; `extra_env` is added to the isolated
    environment, which the returned outcome carries for the agents to use.
    """
    env = isolated_env(fake, workdir, project) | (extra_env or {})
    config: dict[str, Any] = {"method": "grid", "program": str(program), "parameters": parameters}
    if command is not None:
        config["command"] = command
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(config))
    made = subprocess.run(
        [*WANDB_CLI, "sweep", "--project", project, "--entity", fake.entity, "sweep.yaml"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    out = ANSI.sub("", made.stdout + made.stderr)
    assert made.returncode == 0, out
    found = re.search(r"Creating sweep with ID: (\w+)", out)
    assert found, out
    return SweepOutcome(found.group(1), f"{fake.entity}/{project}", env, "")


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
    inprocess: bool = False,
) -> SweepOutcome:
    """`wandb sweep` a grid over `parameters`, then `wandb agent --count N` it, both real CLIs.

    The agent (WANDB_AGENT: its idle wait shortened) runs with cwd=workdir; `count` defaults to
    the grid size. With `inprocess` the agent is `python -m agents --inprocess` instead: the
    same runs in the backend, made in one process (a few seconds instead of ~7 s per run). See
    create_sweep_cli.
    """
    made = create_sweep_cli(
        fake, workdir, parameters, program,
        command=command, project=project, extra_env=extra_env, timeout=timeout,
    )  # fmt: skip
    n = count if count is not None else len(fake_grid(parameters))
    path = f"{made.path}/{made.sweep_id}"
    argv = [*WANDB_AGENT, "--count", str(n), path]
    if inprocess:
        argv = [*IN_PROCESS, path, "--inprocess", "--count", str(n), "--heartbeat", "1"]
    agent = subprocess.run(
        argv,
        cwd=workdir, env=made.env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    agent_output = ANSI.sub("", agent.stdout + agent.stderr)
    assert agent.returncode == 0, agent_output
    return SweepOutcome(made.sweep_id, made.path, made.env, agent_output)


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


ROUNDTRIP = {"lr": {"values": [1.0e-3, 1.0e-2]}, "epochs": {"value": 1}, "seed": {"value": 0}}


# Run two at a time with the other tests' work (conftest.TwoAtATime): the agent runs one
# train.py at a time, on one thread.
@TWO.of("test_sweep_agent_api_roundtrip", 23)
def roundtrip(tmp_path: Path) -> tuple[FakeWandb, SweepOutcome, dict[str, Any]]:
    """The sweep through the real CLIs into a fake of its own, then the public API's view."""
    assert wandb.__version__ == "0.31.0", "tests/fakewandb.py speaks wandb 0.31.0's protocol"
    with FakeWandb() as fake:
        outcome = run_sweep_cli(fake, tmp_path, ROUNDTRIP, TRAIN, extra_env=train_env(tmp_path))
        api = read_runs_via_api(outcome)
    return fake, outcome, api


def test_sweep_agent_api_roundtrip(ran: Ran) -> None:
    tmp_path, (fake, outcome, api) = ran.folder, ran.result()
    expected = fake_grid(ROUNDTRIP)
    assert fake.unknown == [], fake.unknown  # wandb called something the fake does not serve
    assert list(fake.sweeps) == [outcome.sweep_id]
    runs = fake.sweep_runs(outcome.sweep_id)

    # Each grid point ran exactly once, in a run the backend knows, with that config.
    points = [{k: r.params[k] for k in expected[0]} for r in runs]
    assert sorted(points, key=repr) == sorted(expected, key=repr)
    defaults = Config().to_dict()
    for r, point in zip(runs, points, strict=True):
        # train.py's full config: the grid point over the defaults, nothing else.
        assert r.params == defaults | point
        # What the program got, `${args}`: `--key=value`, keys sorted, only the sweep's keys.
        argv = [f"--{k}={v}" for k, v in sorted(point.items())]
        assert json.loads(r.files["wandb-metadata.json"])["args"] == argv
        param_file = tmp_path / "wandb" / f"sweep-{outcome.sweep_id}" / f"config-{r.name}.yaml"
        assert yaml.safe_load(param_file.read_text())["lr"] == {"value": point["lr"]}
        # history and summary reached the backend through file_stream
        assert (r.state, r.exitcode) == ("finished", 0)
        # One row per epoch; the confusion chart, logged after training, is a row of its own.
        assert [row[keys.EPOCH] for row in r.history if keys.EPOCH in row] == [1]
        assert r.summary[keys.EPOCHS_COMPLETED] == 1
        epochs = [row for row in r.history if keys.EPOCH in row]
        assert r.summary[keys.VAL_ACCURACY] == pytest.approx(epochs[-1][keys.VAL_ACCURACY])
        assert 0.1 < r.summary[keys.BEST_VAL_ACCURACY] <= 1.0  # 10 classes: above chance
        assert r.summary[keys.BEST_VAL_ACCURACY] >= r.summary[keys.VAL_ACCURACY]

    # ...and the public API reads the same runs back.
    by_name = {r.name: r for r in runs}
    assert sorted(x["name"] for x in api["runs"]) == sorted(by_name)
    assert api["via_sweep"] == sorted(by_name)
    for x in api["runs"]:
        run = by_name[x["name"]]
        assert (x["state"], x["sweep"]) == ("finished", outcome.sweep_id)
        assert x["config"] == run.params
        for key in (keys.VAL_ACCURACY, keys.BEST_VAL_ACCURACY, keys.EPOCHS_COMPLETED):
            assert x["summary"][key] == pytest.approx(run.summary[key])

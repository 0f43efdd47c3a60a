"""`python -m localsweep sync`: a local sweep into a wandb project, against the loopback fake.

A 2 lr x 2 batch-size grid of train.py (one epoch on digits) runs locally, offline. The store
then says one run crashed and one failed (what a killed agent and a NaN loss leave). `sync`
must upload the three runs that ended with the real `wandb sync`, say the crashed one was left
out, and upload nothing the second time; `wandb.Api()` in a fresh process must see the runs
with their config and summary. `--attach` makes a sweep of exactly the finished runs, and
`--publish` the analysis run beside them.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localsweep.store import Store
from localsweep.sync import Upload, choose_project, note_path, plan
from tests.conftest import ROOT, TWO, Ran, write_sweep
from tests.fakewandb import FakeWandb
from tests.test_publish import read_run
from tests.test_wandb_contract import isolated_env, train_env

METRIC = "best/val/accuracy"
READER = """\
import json, sys
import wandb

path, sweep = sys.argv[1], sys.argv[2:]
api = wandb.Api()
out = {"runs": {r.id: {"state": r.state, "group": r.group, "tags": r.tags,
                       "config": dict(r.config), "summary": dict(r.summary)}
                for r in api.runs(path, per_page=50)}}
if sweep:
    s = api.sweep(f"{path}/{sweep[0]}")
    out["sweep"] = {"runs": sorted(r.id for r in s.runs), "config": dict(s.config)}
print("RESULT " + json.dumps(out, default=dict))
"""


def localsweep(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localsweep", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def read_back(env: dict[str, str], path: str, *sweep: str) -> dict[str, Any]:
    return read_run(path, env, READER, *sweep)


def set_state(store: Path, run_id: str, state: str) -> None:
    """What a dead agent's reaper or a NaN loss would have written for this run."""
    with sqlite3.connect(store / "store.db") as db:
        db.execute("UPDATE runs SET state = ? WHERE id = ?", (state, run_id))


@pytest.mark.slow
def test_sync_uploads_once_then_attaches(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "grid.yaml", {"lr": [1.0e-3, 1.0e-2],
                        "batch_size": [32, 64], "epochs": 1, "seed": 0})  # fmt: skip
    store_dir = tmp_path / "store"
    with FakeWandb() as fake:
        env = isolated_env(fake, tmp_path, "team") | train_env(tmp_path)
        ran = localsweep(env | {"WANDB_MODE": "offline"}, "run", str(sweep), "--store",
                         str(store_dir))  # fmt: skip
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert fake.ops == []  # the local sweep never talked to the server
        store = Store(store_dir)
        [name] = [s.name for s in store.sweeps()]
        crashed, failed, *good = [r.id for r in store.runs(name)]
        set_state(store_dir, crashed, "crashed")
        set_state(store_dir, failed, "failed")
        local = {r.id: r for r in store.runs(name)}

        args = ["sync", name, "--project", "team", "--store", str(store_dir)]
        elsewhere = localsweep(env, "sync", name, "--project", "other", "--store", str(store_dir))
        assert fake.ops == []  # refused before the server was asked anything
        first = localsweep(env, "sync", name, "--store", str(store_dir))  # the runs' project
        assert first.returncode == 0, first.stdout + first.stderr
        got = read_back(env, f"{fake.entity}/team")
        bucket_calls = fake.ops.count("UpsertBucket")
        second = localsweep(env, *args)
        assert second.returncode == 0, second.stdout + second.stderr
        assert fake.ops.count("UpsertBucket") == bucket_calls  # nothing sent again

        set_state(store_dir, crashed, "finished")  # its point ran again and finished
        third = localsweep(env, *args, "--attach", "--publish")
        assert third.returncode == 0, third.stdout + third.stderr
        [sweep_id] = fake.sweeps
        [analysis] = [r for r in fake.runs.values() if r.job_type == "analysis"]
        with_sweep = read_back(env, f"{fake.entity}/team", sweep_id)
        again = localsweep(env, *args, "--attach")
        assert again.returncode == 0, again.stdout + again.stderr
    assert fake.unknown == [], fake.unknown

    assert elsewhere.returncode == 2 and elsewhere.stdout == "", elsewhere.stderr
    assert elsewhere.stderr.startswith(f"localsweep: sync: {name}: --project other: 3 of its runs")
    # Every table of a synced run (its confusion chart) is in the project its run is in.
    tables = [a for a in fake.artifacts.values() if a.type == "run_table"]
    assert len(tables) >= 4 and {a.project for a in tables} == {"team"}
    lines = first.stdout.splitlines()
    assert lines[0] == (f"{name} -> {fake.entity}/team: 0 runs already synced, 3 uploaded; "
                        "left out: 1 crashed (no exit record: sync again once `localsweep run` "
                        "has run their points)")  # fmt: skip
    assert lines[1] == f"runs: {fake.url}/{fake.entity}/team (group {name}: 3 runs)"
    # What the team sees, read with wandb.Api(): the runs that ended, as the store has them.
    assert set(got["runs"]) == {failed, *good}
    for run_id, run in got["runs"].items():
        assert run["group"] == name and run["tags"] == [name, "localsweep"]
        assert {k: run["config"][k] for k in local[run_id].config} == local[run_id].config
        assert run["summary"][METRIC] == pytest.approx(local[run_id].summary[METRIC])
    assert second.stdout.splitlines()[0].startswith(
        f"{name} -> {fake.entity}/team: 3 runs already synced, 0 uploaded; left out: 1 crashed"
    )
    # --attach: the finished runs only; the failed run's point stays a hole for agents.
    assert third.stdout.splitlines()[0] == (
        f"{name} -> {fake.entity}/team: 3 runs already synced, 1 uploaded"
    )
    url = f"{fake.url}/{fake.entity}/team/sweeps/{sweep_id}"
    assert f"sweep: {url} (3 runs attached)" in third.stdout
    assert f"python -m agents {fake.entity}/team/{sweep_id}" in third.stdout
    assert with_sweep["sweep"]["runs"] == sorted([crashed, *good])
    assert with_sweep["sweep"]["config"]["parameters"] == store.sweep(name).config["parameters"]
    # --publish: the analysis run, grouped with the synced runs; its URL printed last.
    assert analysis.group == name and analysis.sweep is None
    assert (
        third.stdout.strip().splitlines()[-1]
        == f"{fake.url}/{fake.entity}/team/runs/{analysis.name}"
    )
    assert list(fake.sweeps) == [sweep_id]  # the same runs again: the same sweep
    assert f"sweep: {url} (3 runs attached)" in again.stdout


def planted_store(tmp_path: Path) -> tuple[Path, str]:
    """A store with a finished, a crashed and a failed run, the first two with a (dummy) offline
    wandb folder each: no training."""
    store_dir = tmp_path / "store"
    store = Store(store_dir)
    name = "grid-000000"
    points = [{"lr": 0.1}, {"lr": 0.2}, {"lr": 0.3}]
    store.create_sweep(name, "method: grid\n", {"method": "grid"}, points)
    for run_id, state in (
        ("aaaa1111", "finished"),
        ("bbbb2222", "crashed"),
        ("cccc3333", "failed"),
    ):
        store.claim(name, run_id)
        store.finish(run_id, state, {}, None, 0)
        if run_id != "cccc3333":  # that one ran with wandb disabled
            folder = store_dir / "wandb" / f"offline-run-20240101_000000-{run_id}"
            folder.mkdir(parents=True)
            (folder / f"run-{run_id}.wandb").write_bytes(b"not replayed in these tests")
    return store_dir, name


def test_plan_takes_the_runs_that_ended_and_counts_the_others(tmp_path: Path) -> None:
    store_dir, name = planted_store(tmp_path)
    ready, left = plan(Store(store_dir), name)
    assert [(u.run_id, u.state, [p.name for p in u.logs]) for u in ready] == [
        ("aaaa1111", "finished", ["run-aaaa1111.wandb"])
    ]
    assert dict(left) == {"crashed": 1, "no wandb files": 1}


# Run two at a time with the other tests' work (conftest.TwoAtATime).
@TWO.of("test_no_key_no_server_unknown_sweep_are_one_line_exit_2", 4.5)
def sync_refused(tmp_path: Path) -> tuple[Any, ...]:
    """`sync` of a planted store without a key and of an unknown sweep while the fake runs,
    then against it stopped: (store, sweep, the fake, the three)."""
    store_dir, name = planted_store(tmp_path)
    with FakeWandb() as fake:
        env = isolated_env(fake, tmp_path, "team")
        no_key = {k: v for k, v in env.items() if k != "WANDB_API_KEY"}
        nokey = localsweep(no_key, "sync", name, "--project", "team", "--store", str(store_dir))
        unknown = localsweep(env, "sync", "nope", "--project", "team", "--store", str(store_dir))
    # The fake is stopped now: nothing answers on its port.
    dead = localsweep(env | {"WANDB_HTTP_TIMEOUT": "2"}, "sync", name, "--project", "team",
                      "--store", str(store_dir))  # fmt: skip
    return store_dir, name, fake, nokey, unknown, dead


def test_no_key_no_server_unknown_sweep_are_one_line_exit_2(ran: Ran) -> None:
    store_dir, name, fake, nokey, unknown, dead = ran.result()
    assert fake.ops == []  # nothing reached the server
    for done in (nokey, unknown, dead):
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("localsweep: "), done.stderr
        assert done.stdout == ""
    assert "API key" in nokey.stderr and "no sweep 'nope'" in unknown.stderr
    assert "wandb: " in dead.stderr
    # wandb's "the service process is busy" is said as what it is: the server did not answer.
    assert "the server did not answer within WANDB_HTTP_TIMEOUT=2 s" in dead.stderr, dead.stderr
    # Nothing was uploaded or noted: no marker beside the run's file, no note in the store.
    assert not list((store_dir / "wandb").glob("*/*.synced"))
    assert not note_path(Store(store_dir), name).exists()


@TWO.of("test_another_project_than_the_runs_tables_is_refused", 10)
def written_elsewhere(tmp_path: Path) -> tuple[Any, ...]:
    """One real offline run of train.py written for project 'elsewhere' (its confusion chart's
    table logged there), with localsweep's own WANDB_DATA_DIR; then a sync of it to 'team', and
    one to its own project once its table's staged file is gone: (store, sweep, fake, plan,
    the two syncs)."""
    sweep = write_sweep(tmp_path / "one.yaml", {"lr": 1.0e-2, "epochs": 1, "seed": 0})
    store_dir = tmp_path / "store"
    with FakeWandb() as fake:
        env = isolated_env(fake, tmp_path, "elsewhere") | train_env(tmp_path)
        env.pop("WANDB_DATA_DIR")
        ran = localsweep(env | {"WANDB_MODE": "offline"}, "run", str(sweep), "--store",
                         str(store_dir))  # fmt: skip
        assert ran.returncode == 0, ran.stdout + ran.stderr
        [name] = [s.name for s in Store(store_dir).sweeps()]
        ready, _ = plan(Store(store_dir), name)
        staged = sorted(p.parent.relative_to(tmp_path).parts for p in tmp_path.rglob("*")
                        if p.parent.name == "staging" and p.is_file())  # fmt: skip
        refused = localsweep(env, "sync", name, "--project", "team", "--store", str(store_dir))
        ops = list(fake.ops)
        shutil.rmtree(store_dir / "wandb-data")  # a cleaned staging folder
        synced = localsweep(env, "sync", name, "--store", str(store_dir))
    return store_dir, name, fake, ops, ready, staged, refused, synced


def test_another_project_than_the_runs_tables_is_refused(ran: Ran) -> None:
    _, name, fake, ops, ready, staged, refused, synced = ran.result()
    # wandb sync --project team would put the run in team and its table in 'elsewhere'.
    [up] = ready
    assert (up.project, up.tables, up.lost) == ("elsewhere", frozenset({"elsewhere"}), 0)
    assert refused.returncode == 2 and refused.stdout == "", refused.stdout + refused.stderr
    assert refused.stderr.splitlines() == [
        f"localsweep: sync: {name}: --project team: 1 of its runs was written for project "
        "'elsewhere' and their tables would stay there (wandb sync moves a run, not its "
        "artifacts); sync with --project elsewhere, or run the study with WANDB_PROJECT=team"
    ]
    assert ops == []  # nothing asked of the server, nothing uploaded
    # The table's file waited in the store, not in the user's ~/.local/share/wandb.
    assert staged and set(staged) == {("store", "wandb-data", "artifacts", "staging")}
    # Once that file is gone, the run still goes up, and the sync says what it lacks.
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert synced.stderr.splitlines()[0] == (
        f"localsweep: sync: {name}: 1 of the runs to upload lost the staged files of their "
        "tables (1 file, gone from WANDB_DATA_DIR since they ran): they go up "
        "without them"
    )
    assert synced.stdout.splitlines()[0] == (
        f"{name} -> {fake.entity}/elsewhere: 0 runs already synced, 1 uploaded (1 without their "
        "tables: their staged files were gone)"
    )
    assert [r.project for r in fake.runs.values()] == ["elsewhere"]


def test_the_project_defaults_to_the_one_the_runs_were_written_for() -> None:
    def up(project: str | None, *tables: str) -> Upload:
        return Upload("r", "finished", (), project, frozenset(tables))

    assert choose_project("s", None, [up("a", "a"), up("a")]) == ("a", "")
    assert choose_project("s", "b", [up("a")]) == ("b", "")  # no tables: nothing left behind
    assert choose_project("s", "a", [up("a", "a")]) == ("a", "")
    for wanted, ready, why in (
        (None, [], "s: no run has wandb files to read a project; name one with --project"),
        (None, [up(None)], "s: cannot read the project 1 of its runs was written for; "
                           "name one with --project"),
        (None, [up("a"), up("b"), up("b")], "s: its runs were written for projects 'a' (1 run), "
                                            "'b' (2 runs); name one with --project"),
    ):  # fmt: skip
        assert choose_project("s", wanted, ready) == ("", why)
    project, why = choose_project("s", "b", [up("a", "a"), up("b", "b")])
    assert project == ""
    assert why.startswith("s: --project b: 1 of its runs was written for project 'a' ")

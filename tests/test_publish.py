"""`python -m analysis publish` against the loopback fake, end to end with the real client.

A 2 lr x 2 seed grid of train.py (one epoch on digits) goes through `wandb sweep` and an
in-process agent; `publish --wandb` then writes the analysis run; `wandb.Api()` reads it back
in a fresh process (its summary and config, then its heatmap image, cell table, custom chart
and report artifact, downloaded as a teammate would), and the fake's own records show the
uploads. A second publish must update that run, not add one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TWO, Ran
from tests.fakewandb import FakeWandb
from tests.fakewandb_artifacts import collection
from tests.test_wandb_contract import TRAIN, isolated_env, run_sweep_cli, train_env

METRIC = "best/val/accuracy"
READER = """\
import json, sys
import wandb

run = wandb.Api().run(sys.argv[1])
print("RESULT " + json.dumps({
    "job_type": run.job_type, "group": run.group, "config": dict(run.config),
    "summary": {k: v for k, v in run.summary.items() if not k.startswith("_")},
}, default=dict))
"""

# What a teammate gets back with the public API alone: the files and artifacts themselves.
READ_BACK = """\
import json, os, sys, tempfile
import wandb

api = wandb.Api()
run = api.run(sys.argv[1])
metric, root = sys.argv[2], tempfile.mkdtemp()
os.chdir(root)  # Artifact.get() downloads into ./artifacts: not into the repository
image = run.summary[f"heatmap/{metric}"]["path"]
run.file(image).download(root=root)
tables = [a for a in run.logged_artifacts() if a.type == "run_table"]
cells = next(t for t in (a.get(f"cells/{metric}") for a in tables) if t is not None)
chart = run.rawconfig["_wandb"]["visualize"][f"chart/{metric}"]["panel_config"]
query = chart["userQuery"]["queryFields"][0]["fields"][3]["args"][0]["value"]
reports = sorted(a.name for a in run.logged_artifacts() if a.type == "report")
[name] = {r.split(":")[0] for r in reports}  # one collection, its versions
latest = api.artifact(f"{run.entity}/{run.project}/{name}:latest")
folder = latest.download(root=os.path.join(root, "report"))
print("RESULT " + json.dumps({
    "image": open(os.path.join(root, image), "rb").read(8).hex(),
    "cells": {"columns": cells.columns, "data": cells.data},
    "chart": {"spec": chart["panelDefId"], "fields": chart["fieldSettings"], "table": query,
              "table_type": run.summary[query]["_type"]},
    "report": {"logged": reports, "type": latest.type, "version": latest.version,
               "aliases": latest.aliases,
               "metadata": latest.metadata,
               "files": {f: open(os.path.join(folder, f), "rb").read(5).decode("latin-1")
                         for f in sorted(os.listdir(folder))}},
}))
"""


def publish(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analysis", "publish", *args],
        cwd=cwd, env=env | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip


def read_run(path: str, env: dict[str, str], reader: str = READER, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", reader, path, *args], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


@pytest.mark.slow
def test_publish_then_republish(tmp_path: Path) -> None:
    parameters = {"lr": {"values": [1.0e-3, 1.0e-2]}, "batch_size": {"values": [32, 64]},
                  "seed": {"values": [0, 1]}, "epochs": {"value": 1}}  # fmt: skip
    with FakeWandb() as fake:
        sweep = run_sweep_cli(
            fake, tmp_path, parameters, TRAIN, extra_env=train_env(tmp_path), inprocess=True
        )
        path = f"{sweep.path}/{sweep.sweep_id}"
        args = ["--wandb", path, "--metric", METRIC, "--x", "lr", "--y", "batch_size",
                "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
        first = publish(sweep.env, tmp_path, *args)
        assert first.returncode == 0, first.stdout + first.stderr
        url = first.stdout.strip().splitlines()[-1]
        [analysis] = [r for r in fake.runs.values() if r.job_type == "analysis"]
        assert url == f"{fake.url}/{sweep.path}/runs/{analysis.name}"
        got = read_run(f"{sweep.path}/{analysis.name}", sweep.env)
        second = publish(sweep.env, tmp_path, *args)
        assert second.returncode == 0, second.stdout + second.stderr
        back = read_run(f"{sweep.path}/{analysis.name}", sweep.env, READ_BACK, METRIC)
    assert fake.unknown == [], fake.unknown
    # One analysis run, the same one both times.
    assert [r.name for r in fake.runs.values() if r.job_type == "analysis"] == [analysis.name]
    assert second.stdout.strip().splitlines()[-1] == url

    assert (got["job_type"], got["group"]) == ("analysis", sweep.sweep_id)
    assert got["config"]["x"] == "lr" and got["config"]["metrics"] == [METRIC]
    s = got["summary"]
    assert s[f"heatmap/{METRIC}"]["_type"] == "image-file"
    assert s[f"cells/{METRIC}"]["_type"] == "table-file" and s[f"cells/{METRIC}"]["nrows"] == 4
    assert s[f"anova/{METRIC}"]["_type"] == "table-file"
    # The uploads, as the fake received them: the image, the cell table's rows.
    files = analysis.files
    png = files[s[f"heatmap/{METRIC}"]["path"]]
    assert png.startswith(b"\x89PNG")
    table = json.loads(files[s[f"cells/{METRIC}"]["path"]])
    assert table["columns"][:5] == ["x", "y", "mean", "std", "n"]
    assert sorted(row[4] for row in table["data"]) == [2, 2, 2, 2]  # n: the two seeds
    # The custom chart: created once for the entity, its spec the heatmap's.
    [(cid, chart)] = fake.charts.items()
    assert cid == f"{fake.entity}/sweepmap-heatmap" and chart["spec"]["layer"][0]["mark"] == "rect"
    # The report artifact: PDF and PNG, versions of one collection, not copies.
    reports = [a for a in fake.artifacts.values() if a.type == "report"]
    assert {a.name for a in reports} == {reports[0].name}
    assert {"report.pdf", "report.png"} <= set(reports[-1].files)
    assert reports[-1].files["report.pdf"].startswith(b"%PDF")
    versions = collection(fake, reports[0].project, reports[0].name)
    assert [a.version for a in versions] == list(range(len(versions))) and len(versions) <= 2
    assert "latest" in versions[-1].aliases
    meta = json.loads(versions[-1].metadata or "{}")
    assert s[f"finding/{METRIC}"] == meta["findings"][METRIC] != ""
    assert meta["runs"] == sorted(r.name for r in fake.sweep_runs(sweep.sweep_id))

    # Read back through wandb.Api() alone, after the republish: what the team sees.
    assert back["image"] == b"\x89PNG\r\n\x1a\n".hex()
    cells = back["cells"]
    assert cells["columns"][:5] == ["x", "y", "mean", "std", "n"]
    assert sorted(row[4] for row in cells["data"]) == [2, 2, 2, 2]
    # The means, against a group-by of the runs' own summaries as the fake received them.
    by_cell: dict[tuple[Any, Any], list[float]] = {}
    for r in fake.sweep_runs(sweep.sweep_id):
        by_cell.setdefault((r.params["lr"], r.params["batch_size"]), []).append(r.summary[METRIC])
    expected = sorted(sum(v) / len(v) for v in by_cell.values())
    assert sorted(row[2] for row in cells["data"]) == pytest.approx(expected)
    assert len({(row[0], row[1]) for row in cells["data"]}) == 4
    chart = back["chart"]
    assert chart["spec"] == cid and chart["table_type"] == "table-file"
    assert chart["table"] == f"chart/{METRIC}_table" and set(chart["fields"]) >= {"x", "y"}
    report = back["report"]
    assert report["logged"] == [f"{versions[0].name}:v{a.version}" for a in versions]
    assert (report["type"], report["version"]) == ("report", f"v{versions[-1].version}")
    assert "latest" in report["aliases"] and report["metadata"]["findings"] == meta["findings"]
    assert report["files"]["report.pdf"] == "%PDF-" and report["files"]["report.png"][1:4] == "PNG"


# Run two at a time with the other tests' work (conftest.TwoAtATime).
@TWO.of("test_no_key_is_one_line_exit_2", 4)
def publish_without_a_key(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    with FakeWandb() as fake:
        env = isolated_env(fake, tmp_path, "p")
    env.pop("WANDB_API_KEY")
    return publish(env, tmp_path, "--wandb", "e/p/abc", "--cache-dir", str(tmp_path))


def test_no_key_is_one_line_exit_2(ran: Ran) -> None:
    done = ran.result()
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "API key" in lines[0], done.stderr

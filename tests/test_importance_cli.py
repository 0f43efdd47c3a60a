"""`python -m analysis importance` as a real process: it names the pair and writes its grid,
a bad input is one line with exit 2 and nothing written, a scan's report is refused, and a
wandb scan reads as the store's does (then from its cache)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from localsweep.store import Store
from sweepmap import keys
from sweepmap.sweepfile import read_sweep, sweep_name
from tests.conftest import TWO, Ran
from tests.test_importance import REPLICATES, ROOT, SCAN, make_scan


def importance(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analysis", "importance", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


# This and the refused report below run two at a time with the other tests' work
# (conftest.TwoAtATime).
@TWO.of("test_importance_names_the_pair_and_writes_its_grid", 5)
def importance_of_the_scan(tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root, yaml_path, _ = make_scan(tmp_path)
    out, grid = tmp_path / "out", tmp_path / "lr_optimizer_grid.yaml"
    argv = ["--store", str(root), "--yaml", str(yaml_path), "--bootstrap", str(REPLICATES)]
    return grid, importance(*argv, "--out", str(out), "--emit-grid", str(grid))


def test_importance_names_the_pair_and_writes_its_grid(ran: Ran) -> None:
    from localsweep.grid import load_sweep

    out, (grid, done) = ran.folder / "out", ran.result()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(ln.startswith("budget 4 epochs: 46 runs (14 stopped") for ln in lines)
    verdict = next(ln for ln in lines if ln.startswith("study "))
    assert verdict.startswith("study lr × optimizer: interaction share ")
    table = pd.read_csv(out / "importance.csv")
    top = table[table["kind"] == "pair"].iloc[0]
    assert verdict.startswith(
        f"study lr × optimizer: interaction share {top['share']:.2f} [{top['lo']:.2f}, "
        f"{top['hi']:.2f}], first in {top['first']:.0%} of {REPLICATES} bootstraps"
    )
    assert {p.name for p in out.iterdir()} == {
        "importance.png", "importance.csv", "importance.md", "manifest.json"
    }  # fmt: skip
    assert (out / "importance.png").stat().st_size > 20_000
    assert len(table) == 5 + math.comb(5, 2)
    load_sweep(grid)  # the grid checks of `localsweep run`
    assert str(grid) == lines[-1]


def _grid_store(tmp: Path) -> Path:
    grid = ROOT / "sweeps" / "lr_optimizer.yaml"
    text, config = read_sweep(grid)
    Store(tmp / "grid").create_sweep(sweep_name(grid, config), text, config)
    return grid


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("grid", "method: grid: importance reads a scan (method: random or bayes)"),
        ("few", "importance needs at least 15 runs (3 per varied parameter, at least 10)"),
        pytest.param("metric", "--metric 'val/acc': no run of scan-", marks=pytest.mark.slow),
        pytest.param("exists", "exists; --force to overwrite it", marks=pytest.mark.slow),
        pytest.param("bootstrap", "--bootstrap 5: at least 20", marks=pytest.mark.slow),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    tmp_path: Path, case: str, expect: str
) -> None:
    root, yaml_path, _ = make_scan(tmp_path)
    out, grid = tmp_path / "out", tmp_path / "grid.yaml"
    argv = ["--store", str(root), "--yaml", str(yaml_path), "--out", str(out)]
    extra = ["--emit-grid", str(grid), "--bootstrap", "20"]
    if case == "grid":
        argv = ["--store", str(tmp_path / "grid"), "--yaml", str(_grid_store(tmp_path))]
        argv += ["--out", str(out)]
    elif case == "few":
        extra += ["--budget", "8", "--metric", keys.VAL_LOSS]
        Store(root, create=False).db.execute("DELETE FROM runs WHERE id >= 'r30'")
    elif case == "metric":
        extra += ["--metric", "val/acc"]
    elif case == "exists":
        grid.write_text("# mine\n")
    else:
        extra[-1] = "5"
    done = importance(*argv, *extra)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and expect in done.stderr, done.stderr
    assert not out.exists()
    assert grid.read_text() == "# mine\n" if case == "exists" else not grid.exists()


@TWO.of("test_report_of_a_hyperband_scan_is_refused_in_one_line", 2.5)
def report_of_the_scan(tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root, yaml_path, _ = make_scan(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "analysis", "report", "--store", str(root), "--yaml",
         str(yaml_path), "--out", str(tmp_path / "out"), "--x", "lr", "--y", "optimizer"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return yaml_path, done


def test_report_of_a_hyperband_scan_is_refused_in_one_line(ran: Ran) -> None:
    out, (yaml_path, done) = ran.folder / "out", ran.result()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"python -m analysis: error: sweep {sweep_name(yaml_path, read_sweep(yaml_path)[1])} is "
        "a scan (method random) with early_terminate hyperband: its runs differ in budget (26 "
        "stopped early, at epochs 2 to 6), and one heatmap is one budget; rank its pairs with "
        f"`python -m analysis importance --yaml {yaml_path}`, then run the grid it writes "
        "(--emit-grid FILE)"
    ]
    assert not out.exists()


@pytest.mark.slow  # wandb's client in two processes: ~10 s
def test_a_wandb_scan_reads_as_the_store_does_then_from_its_cache(tmp_path: Path) -> None:
    from tests.fakewandb import FakeWandb
    from tests.fakewandb_runs import FakeRun, FakeSweep

    root, yaml_path, _ = make_scan(tmp_path)
    store = Store(root, create=False)
    name = sweep_name(yaml_path, read_sweep(yaml_path)[1])
    config = store.sweep(name).config
    env = {"HOME": str(tmp_path), "WANDB_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    cache = tmp_path / "cache"
    argv = ["--cache-dir", str(cache), "--bootstrap", "20", "--out", str(tmp_path / "out")]
    with FakeWandb() as fake:
        fake.sweeps["sw1"] = FakeSweep("sw1", "proj", config, SCAN)
        for r in store.runs(name):
            # As `localsweep sync` or `wandb agent` leave them: a stopped run is finished
            # (train.py exits 0) with the reason in its summary.
            state = "finished" if r.state == "stopped" else r.state
            config_ = {k: {"value": v} for k, v in r.config.items()}
            fake.runs[r.id] = FakeRun(r.id, "proj", "sw1", state, config_, r.summary,
                                      store.history(r.id))  # fmt: skip
        path = f"{fake.entity}/proj/sw1"
        online = subprocess.run(
            [sys.executable, "-m", "analysis", "importance", "--wandb", path, *argv],
            cwd=ROOT, env={**env, **fake.env("proj")}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert online.returncode == 0, online.stderr
    line = "budget 4 epochs: 46 runs (14 stopped runs at their epoch-4 value); 14 left out "
    assert line + "(12 stopped before epoch 4, 2 failed)" in online.stdout
    offline = subprocess.run(  # the fake is gone: the runs and their histories are cached
        [sys.executable, "-m", "analysis", "importance", "--wandb", path, *argv],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert offline.returncode == 0, offline.stderr
    verdict = [ln for ln in online.stdout.splitlines() if ln.startswith("study ")]
    assert verdict == [ln for ln in offline.stdout.splitlines() if ln.startswith("study ")]

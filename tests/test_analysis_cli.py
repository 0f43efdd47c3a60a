"""`python -m analysis`: files written, the A4 page, the pivot CSV, and refusals (exit 2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.table import AnalysisError, build_table
from localsweep.store import Store
from sweepmap import keys
from sweepmap.sweepfile import read_sweep, sweep_name

YAML = Path(__file__).resolve().parents[1] / "sweeps" / "lr_optimizer.yaml"


def fill(root: Path, epochs_of: dict[str, int] | None = None) -> tuple[str, pd.DataFrame]:
    """The lr_optimizer sweep in a real store, every point finished with a synthetic score,
    except lr=1e-1/adam, which failed for every seed. Returns (sweep name, runs)."""
    text, config = read_sweep(YAML)
    name = sweep_name(YAML, config)
    store = Store(root)
    store.create_sweep(name, text, config)
    rng = np.random.default_rng(3)
    rows = []
    for i, (lr, opt, seed) in enumerate(
        (lr, opt, seed)
        for lr in config["parameters"]["lr"]["values"]
        for opt in config["parameters"]["optimizer"]["values"]
        for seed in (0, 1, 2)
    ):
        run_id = f"r{i:02d}"
        state = "failed" if (lr, opt) == (1e-1, "adam") else "finished"
        acc = 0.9 - 0.05 * abs(np.log10(lr) + 3) + 0.01 * rng.normal()
        epochs = (epochs_of or {}).get(run_id, 8)
        summary = {
            keys.BEST_VAL_ACCURACY: acc,
            keys.VAL_ACCURACY: acc - 0.01,
            keys.VAL_LOSS: 1 - acc,
            keys.EPOCHS_COMPLETED: epochs,
        }
        point = {
            "lr": lr,
            "optimizer": opt,
            "seed": seed,
            "dataset": "digits",
            "model": "cnn",
            "epochs": epochs,
            "batch_size": 32,
        }
        store.db.execute(
            "INSERT INTO runs (id, sweep, config, state, summary, created) VALUES (?,?,?,?,?,?)",
            (
                run_id,
                name,
                json.dumps(point),
                state,
                json.dumps(summary if state == "finished" else {keys.FAILURE: "diverged"}),
                time.time() + i,
            ),
        )
        rows.append({"lr": lr, "optimizer": opt, "state": state, "acc": acc})
    store.close()
    return name, pd.DataFrame(rows)


def test_report_is_one_a4_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path / "store")
    out = tmp_path / "out"
    note = tmp_path / "note.txt"
    note.write_text("The best lr moves with the optimizer.\n\nsgd wants the largest one.")
    argv = ["report", "--store", str(tmp_path / "store"), "--yaml", str(YAML), "--out", str(out)]
    assert main([*argv, "--note-file", str(note)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    pdf = Path(lines[-1])
    assert pdf == out / "report.pdf" and pdf.stat().st_size > 10_000
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf.read_bytes())
    assert box is not None
    assert (float(box.group(1)), float(box.group(2))) == pytest.approx((595, 842), abs=1)
    png = mpimg.imread(out / "report.png")
    assert png.shape[0] / png.shape[1] == pytest.approx(11.69 / 8.27, rel=0.01)
    assert "WARNING 1 empty cell(s), hatched: lr=1e-1/optimizer=adam" in lines
    assert not list(out.glob(".partial-*"))


def test_heatmap_pivot_csv_equals_groupby(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, runs = fill(tmp_path / "store")
    out = tmp_path / "out"
    argv = [
        "heatmap",
        "--store",
        str(tmp_path / "store"),
        "--metric",
        keys.BEST_VAL_ACCURACY,
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    written = {Path(p).name for p in capsys.readouterr().out.splitlines() if p.startswith("/")}
    for stem in ("heatmap_best_val_accuracy", "interaction_best_val_accuracy"):
        assert {f"{stem}.png", f"{stem}.svg"} <= written
        assert (out / f"{stem}.png").stat().st_size > 5_000
    csv = pd.read_csv(out / "pivot_best_val_accuracy.csv")
    config = read_sweep(YAML)[1]["parameters"]
    cells = len(config["lr"]["values"]) * len(config["optimizer"]["values"])
    assert len(csv) == cells  # every cell of the grid, the empty one included
    done = runs[runs["state"] == "finished"]
    want = done.groupby(["lr", "optimizer"])["acc"].agg(["mean", "std", "count"]).reset_index()
    got = csv.merge(want, on=["lr", "optimizer"], how="left")
    np.testing.assert_allclose(got["mean_x"], got["mean_y"], equal_nan=True)
    np.testing.assert_allclose(got["std_x"], got["std_y"], equal_nan=True)
    assert (got["n"] == got["count"].fillna(0)).all()
    empty = csv[(csv["lr"] == 0.1) & (csv["optimizer"] == "adam")].iloc[0]
    assert (empty["n"], empty["failed"]) == (0, 3)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--sweep", "nope"], r"--sweep 'nope': not in .*; sweeps there: lr_optimizer-"),
        (["--metric", "val/acc"], r"--metric 'val/acc'.*allowed: .*best/val/accuracy"),
        (["--x", "lrate"], r"--x 'lrate': not a parameter of this sweep; did you mean 'lr'\?"),
        (["--store", "/nonexistent/store"], r"no local store there"),
        (["mixed"], r"mixed training budgets .*r05 \(epochs=4\).*--allow-mixed-budgets"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    fill(tmp_path / "store", {"r05": 4} if args == ["mixed"] else None)
    out = tmp_path / "out"
    extra = [] if args == ["mixed"] else args
    argv = ["heatmap", "--store", str(tmp_path / "store"), *extra, "--out", str(out)]
    if "--store" in args:
        argv = ["heatmap", *args, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.search(says, err), err
    assert not out.exists()  # nothing half-written


def test_mixed_budgets_drawn_with_the_flag(tmp_path: Path) -> None:
    fill(tmp_path / "store", {"r05": 4})
    out = tmp_path / "out"
    argv = [
        "heatmap",
        "--store",
        str(tmp_path / "store"),
        "--metric",
        keys.VAL_LOSS,
        "--allow-mixed-budgets",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert (out / "heatmap_val_loss.svg").stat().st_size > 0


def test_analysis_does_not_import_torch() -> None:
    code = "import sys, analysis.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_sweep_found_by_yaml_or_alone_else_listed(tmp_path: Path) -> None:
    name, _ = fill(tmp_path)
    assert build_table(tmp_path).name == name  # the only sweep: no name needed
    store = Store(tmp_path)
    store.create_sweep("other-123456", "", {"method": "grid", "parameters": {}})
    store.close()
    with pytest.raises(AnalysisError, match=rf"holds 2 sweeps; .*: {name}, other-123456"):
        build_table(tmp_path)
    assert build_table(tmp_path, yaml_path=YAML).name == name
    assert build_table(tmp_path, sweep="other-123456").table.empty

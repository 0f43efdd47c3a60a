"""The throughput benchmark: its arithmetic, its smaller grids, and one grid point run both ways."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest

from agents.warm import STEPS
from bench import course_epoch, packing
from bench.facts import startup_floor
from bench.gestures_epoch import course_run, course_unavailable, find_course_python, parse_course
from bench.report import fit_line, max_difference, report, scaling_section
from bench.sweep_throughput import Measurement, bench_env, measure, median_run, smaller_grids
from sweepmap.sweepfile import grid_size
from tests.conftest import ROOT, write_sweep


def _m(mode: str, agents: int, wall: float, train: float, acc: dict[str, float]) -> Measurement:
    return Measurement(mode, agents, grid=4, runs=4, wall_s=wall, train_s=train, other_cores=0.0,
                       accuracy=acc)  # fmt: skip


def test_overhead_is_counted_in_agent_seconds() -> None:
    # 2 agents for 10 s are 20 agent-seconds; 15 of them in training loops: 25% overhead.
    m = _m("inprocess", 2, wall=10.0, train=15.0, acc={})
    assert m.overhead == pytest.approx(0.25)
    assert m.overhead_per_run_s == pytest.approx(5.0 / 4)
    assert m.runs_per_min == pytest.approx(24.0)
    assert _m("process", 1, wall=8.0, train=6.0, acc={}).overhead == pytest.approx(0.25)


def test_max_difference_compares_shared_points_only() -> None:
    a = _m("inprocess", 1, 1.0, 1.0, {"p": 0.5, "q": 0.9})
    b = _m("process", 1, 1.0, 1.0, {"p": 0.75})
    assert max_difference([a, b]) == (0.25, 1)


def test_report_gives_the_targets_and_the_start_up_floor_per_row() -> None:
    results = {
        ("inprocess", 1): _m("inprocess", 1, wall=10.0, train=9.0, acc={}),  # 10% overhead
        ("inprocess", 2): _m("inprocess", 2, wall=6.0, train=9.0, acc={}),  # 25%
        ("process", 1): _m("process", 1, wall=40.0, train=9.0, acc={}),
    }
    text = "\n".join(report(Path("s.yaml"), "cmd", {}, results, None, floor={"a": 0.25, "b": 0.75}))
    # 1 s of imports against 9 s of training in one agent, 4.5 s in each of two
    assert "at least 1 agent(s) 10.0%; 2 agent(s) 18.2%" in text
    assert (
        "1 agent(s) 10.0%, met; 2 agent(s) 25.0%, not met, nor can it be here: the start-up "
        "floor alone is 18.2%" in text
    )
    assert "target at least 3x: 1 agent(s) 4.0x, met; 2 agent(s) 6.7x, met." in text
    assert "1.0 s alone on this machine (a 0.25 s, b 0.75 s;" in text
    assert "**6.7x** runs/min" in text  # 2 agents: 40 runs/min against 6


def test_repeated_rows_keep_the_median_share_and_report_the_range() -> None:
    # Shares 30%, 10% and 12.5%: the median share is the 12 s row, the median wall the 11 s one.
    runs = [
        _m("inprocess", 1, wall=w, train=t, acc={}) for w, t in ((10, 7), (11, 9.9), (12, 10.5))
    ]
    assert median_run(runs).wall_s == 12
    results = {("inprocess", 1): median_run(runs), ("process", 1): _m("process", 1, 40.0, 9.0, {})}
    repeated = {("inprocess", 1): runs, ("process", 1): [results[("process", 1)]]}
    text = "\n".join(report(Path("s.yaml"), "cmd", {}, results, None, None, repeated))
    assert "| 12.0 |" in text and "1 agent(s) 12.5%, met" in text
    assert "median by overhead share of 3 measurements" in text
    assert "ranged over 1 agent(s) 10.0% to 30.0%" in text


def test_scaling_fits_fixed_and_per_run_cost() -> None:
    assert fit_line([(9, 14.0), (18, 23.0), (36, 41.0)]) == pytest.approx((5.0, 1.0))
    # 5 agent-s fixed + 1 agent-s a run, 0.9 s of it training: the overhead is 5 + 0.1 n,
    # 15% at n = .85 * 5 / (.15 * .9 - .85 * .1) = 85 runs, and 10% on large grids.
    results = {
        (n, a): Measurement("inprocess", a, n, n, (5.0 + n * 1.0) / a, 0.9 * n, 0.0)
        for n in (9, 18, 36)
        for a in (1, 2)
    }
    text = "\n".join(scaling_section(Path("s.yaml"), "cmd", results))
    assert "wall ≈ 5.0 s + 1.00 s per run" in text and "wall ≈ 2.5 s + 0.50 s per run" in text
    assert text.count("5.0 agent-s fixed (start-up and exit) + 0.100 agent-s per run") == 2
    assert text.count("15% from about 85 runs and tends to 10%") == 2


def test_startup_floor_times_each_step_of_the_real_warm_up(tmp_path: Path) -> None:
    floor = startup_floor(bench_env(tmp_path), repeats=1)
    steps = ["wandb", *(step for step, _ in STEPS), "wandb service (the rest of its start)"]
    assert list(floor) == steps
    assert all(s >= 0.0 for s in floor.values()) and floor["torch"] > 0.05, floor


def test_smaller_grids_halve_the_longest_list() -> None:
    config: dict[str, Any] = {
        "method": "grid",
        "parameters": {
            "lr": {"values": [1e-4, 1e-3, 1e-2, 1e-1]},
            "optimizer": {"values": ["sgd", "adam", "rmsprop"]},
            "seed": {"values": [0, 1, 2]},
            "epochs": {"value": 8},
        },
    }
    grids = smaller_grids(config, 3)
    assert [grid_size(g) for g in grids] == [36, 18, 9]
    assert grids[0] is config and config["parameters"]["lr"]["values"] == [1e-4, 1e-3, 1e-2, 1e-1]
    assert grids[2]["parameters"]["lr"]["values"] == [1e-4]


@pytest.mark.slow
def test_one_point_gives_the_same_accuracy_in_process_and_per_process(tmp_path: Path) -> None:
    """The fast path trains exactly what `wandb agent` would: same seeds, same metrics."""
    sweep = write_sweep(
        tmp_path / "one.yaml",
        {"lr": [0.01], "optimizer": "adam", "seed": 3, "epochs": 2, "dataset": "digits"},
    )
    fast = measure(sweep, "inprocess", agents=1)
    slow = measure(sweep, "process", agents=1)
    assert fast.runs == slow.runs == 1
    (point,) = fast.accuracy
    assert abs(fast.accuracy[point] - slow.accuracy[point]) <= 1e-6
    assert fast.accuracy[point] > 0.5  # it trained
    for m in (fast, slow):
        assert 0.0 < m.train_s < m.wall_s and 0.0 < m.overhead < 1.0


@pytest.mark.slow
def test_packing_measures_each_agent_count_and_stack_on_the_cpu(tmp_path: Path) -> None:
    """bench.packing end to end, forced onto the CPU: one row per count and per stack, on one
    cell's replicates (--cell), the stacking row's runs trained in one stack."""
    sweep = write_sweep(
        tmp_path / "pack.yaml", {"lr": [0.01], "seed": [5], "epochs": 3, "dataset": "digits"}
    )
    out = tmp_path / "packing.md"
    code = packing.main(["--sweep", str(sweep), "--agents", "1,2", "--runs", "2", "--epochs",
                         "1", "--cell", "lr=0.01", "--stack", "2", "--device", "cpu",
                         "--out", str(out)])  # fmt: skip
    assert code == 0
    text = out.read_text()
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| 1 |")
            or line.startswith("| 2 |")]  # fmt: skip
    # agents, runs a stack, bf16, runs, ..., speed-up, runs stacked
    assert [r[:4] for r in rows] == [[" 1 ", " - ", " no ", " 2 "], [" 2 ", " - ", " no ", " 2 "],
                                     [" 1 ", " 2 ", " no ", " 2 "]]  # fmt: skip
    assert rows[0][6] == " 1.00x " and [r[7] for r in rows] == [" 0 ", " 0 ", " 2 "]
    assert rows[2][9] == " - "  # no overhead share for a stack: its runs share one loop
    assert "largest difference in final val/accuracy of one grid point" in text


def test_packing_refuses_a_stack_without_a_cell_and_a_bad_cell(capsys) -> None:
    for argv, said in (
        (["--stack", "3"], "--stack: needs --cell, so that every row trains the same cell's"),
        (["--stack", "49", "--cell", "x=1"], "--stack '49': each must be in 2..48"),
        (["--cell", "hidden_size=64"], "--cell 'hidden_size=64': still varied: dropout; fix"),
        (["--cell", "width=3"], "--cell 'width=3': expected KEY=VALUE with KEY one of hidden"),
        (["--cell", "hidden_size=64,dropout=0", "--stack", "12", "--runs", "8"],
         "--stack 12: more than --runs 8"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            packing.main(["--device", "cpu", *argv])
        assert exit_info.value.code == 2
        assert said in capsys.readouterr().err, argv


def test_packing_refuses_bf16_without_a_gpu(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        packing.main(["--device", "cpu", "--bf16"])
    assert exit_info.value.code == 2
    assert "--bf16: bf16 autocast needs a GPU" in capsys.readouterr().err


def test_the_course_script_imports_nothing_of_sweepmap() -> None:
    """It runs in .venv-course, where only the course's packages are installed."""
    tree = ast.parse((ROOT / "bench" / "course_epoch.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}  # fmt: skip
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module and not n.level}  # fmt: skip
    course = {"torch", "tqdm", "numpy", "mads_datasets", "mltrainer", "__future__"}
    assert imported - course - sys.stdlib_module_names == set()
    assert {"torch", "mltrainer", "mads_datasets"} <= imported


def test_the_parent_reads_what_the_course_script_writes() -> None:
    lines = [course_epoch.record(1, 1.5, 0.25), course_epoch.record(2, 1.25, 0.5)]
    trace = parse_course("\n".join(lines) + "\n", epochs=2)
    assert trace.seconds == [1.5, 1.25] and trace.accuracy == [0.25, 0.5]
    with pytest.raises(ValueError, match="2 epochs reported, 3 asked"):
        parse_course("\n".join(lines), epochs=3)
    with pytest.raises(ValueError, match="line 2 is not epoch 2's JSON: 'Logging to x'"):
        parse_course(f"{lines[0]}\nLogging to x\n", epochs=2)
    with pytest.raises(ValueError, match="line 1 is not epoch 1's JSON"):
        parse_course(lines[1], epochs=1)


def test_a_course_round_is_one_process_and_its_failure_says_why(tmp_path: Path) -> None:
    # A stand-in for course_epoch.py, run by this interpreter instead of .venv-course's.
    child = tmp_path / "child.py"
    child.write_text(
        "import json, sys\n"
        "args = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
        "if args['--zip'] == 'bad.zip':\n"
        "    sys.exit('bad.zip: md5 0, expected 1')\n"
        "for e in range(1, int(args['--epochs']) + 1):\n"
        "    print(json.dumps({'epoch': e, 'seconds': 0.5, 'accuracy': int(args['--seed'])}))\n"
    )
    python = Path(sys.executable)
    trace = course_run(python, "g.zip", seed=1, epochs=3, script=child)
    assert trace.seconds == [0.5] * 3 and trace.accuracy == [1.0] * 3
    with pytest.raises(RuntimeError) as failed:
        course_run(python, "bad.zip", seed=0, epochs=1, script=child)
    assert str(failed.value).endswith("--epochs 1 exited 1:\nbad.zip: md5 0, expected 1")


def test_without_a_course_python_the_course_is_left_out_in_one_line(tmp_path: Path) -> None:
    built = tmp_path / "python"
    assert find_course_python(None, {}, default=built) is None  # no .venv-course here
    built.touch()
    assert find_course_python(None, {}, default=built) == built
    env = {"SWEEPMAP_COURSE_PYTHON": "/env/python"}
    assert find_course_python(None, env, default=built) == Path("/env/python")
    assert find_course_python(Path("/arg/python"), env, default=built) == Path("/arg/python")
    assert course_unavailable(None, "g.zip") == (
        "- course: not measured (no course python: `make bench-gestures` builds .venv-course "
        "from bench/course.lock)."
    )
    assert "/nope/python does not exist" in str(course_unavailable(Path("/nope/python"), "z"))
    assert "set SWEEPMAP_GESTURES_ZIP" in str(course_unavailable(built, None))
    assert course_unavailable(built, "g.zip") is None

"""bench/peers.py: both arms really run as processes on a tiny grid and agree; the check that
they agree fails loudly when one number differs; GridSampler gets exactly the sweep's points."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bench import peers
from bench.optuna_trial import point_key, search_space
from bench.peers_report import Arm, Timing, disagreements
from localsweep.grid import all_points, load_sweep
from sweepmap import keys

SWEEP = Path(__file__).resolve().parents[1] / "sweeps" / "lr_optimizer.yaml"


def _arm(name: str, results: dict[str, dict[str, Any]], wall: float = 10.0) -> Arm:
    t0 = time.time()
    spans = [(t0 + 1.0 + i, t0 + 2.0 + i) for i in range(len(results))]
    timing = Timing(wall, t0, t0 + wall, cpu_s=2 * wall, other_cores=0.0)
    return Arm(name, 2, timing, results, len(results), spans, train_s=1.0)


def _outcome(acc: float, loss: float) -> dict[str, Any]:
    return {keys.VAL_ACCURACY: acc, keys.VAL_LOSS: loss, keys.FAILURE: None}


POINTS = {"a": _outcome(0.5, 1.25), "b": _outcome(0.75, 0.5)}


@pytest.mark.slow  # ~20 s: five interpreters
# Both arms for real: five interpreters (sweepmap's runner and 2 agents, 2 Optuna workers),
# about 35 CPU-seconds, 20 s on the 2-core machine with other work on it.
def test_both_arms_run_the_same_points_and_agree(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    out.write_text("# earlier results\n")
    assert peers.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# earlier results\n")  # appended, never rewritten
    assert "4 grid points, 2 sweepmap agents against 2 Optuna worker processes" in text
    assert "| 1 | " in text  # the round's row
    assert "| sweepmap, wandb offline | " in text and "| Optuna, no wandb | " in text
    assert "sweepmap ÷ Optuna runs/min, paired by round: **" in text
    assert "the same in both arms and every round: largest |Δ final val/accuracy| 0.0e+00" in text


def test_a_different_accuracy_loss_or_missing_point_is_a_disagreement() -> None:
    same = _arm("optuna", dict(POINTS))
    assert disagreements([_arm("sweepmap", POINTS), same], 2, 1e-9) == []
    acc = _arm("optuna", {**POINTS, "a": _outcome(0.5 + 1e-7, 1.25)})
    loss = _arm("optuna", {**POINTS, "b": _outcome(0.75, 0.5 * (1 + 1e-6))})
    failed = _arm("optuna", {**POINTS, "b": {**POINTS["b"], keys.FAILURE: "nan loss"}})
    missing = _arm("optuna", {"a": POINTS["a"]})
    for other in (acc, loss, failed):
        wrong = disagreements([_arm("sweepmap", POINTS), other], 2, 1e-9)
        assert len(wrong) == 1 and wrong[0].startswith("a:" if other is acc else "b:")
    wrong = disagreements([_arm("sweepmap", POINTS), missing], 2, 1e-9)
    assert wrong == ["optuna: 1 of 2 grid points ran", "b: only in sweepmap"]


def test_the_bench_fails_loudly_and_appends_nothing_when_results_disagree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    points = {point_key(p): _outcome(0.5, 1.0) for p in all_points(peers.quick_sweep(_cfg()))}
    off = dict(points)
    off[next(iter(off))] = _outcome(0.25, 1.0)
    arms = {"sweepmap": _arm("sweepmap", points, 12.0), "optuna": _arm("optuna", off, 15.0)}
    monkeypatch.setattr(peers, "measure", lambda arm, sweep, agents, stack=0: arms[arm])
    monkeypatch.setattr(peers, "machine_facts", dict)  # its torch child costs seconds
    out = tmp_path / "results.md"
    assert peers.main(["--quick", "--out", str(out)]) == 1
    assert not out.exists()
    captured = capsys.readouterr()
    assert "**they disagree** at 1 point(s)" in captured.out
    assert "the arms' results disagree" in captured.err
    # 4 runs in 12 s and in 15 s, 2 cores busy
    assert "| 1 | 12.0 | 20.0 | 24 | 0.00 | 15.0 | 16.0 | 30 | 0.00 | 1.25 |" in captured.out


def _cfg() -> dict[str, Any]:
    return load_sweep(SWEEP)[1]


def test_the_optuna_grid_is_the_sweeps_points() -> None:
    points = all_points(_cfg())
    space = search_space(points)
    assert {k: len(v) for k, v in space.items()} == {"lr": 4, "optimizer": 3, "seed": 3}
    assert len(all_points(peers.quick_sweep(_cfg()))) == 4
    with pytest.raises(SystemExit, match="not the product of their axes"):
        search_space(points[:5])  # a run_cap's cut: GridSampler would run other points

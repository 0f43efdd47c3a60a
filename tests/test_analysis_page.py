"""What the page says: t CIs clipped to the metric's range, the Tukey tie set, the robust colour
range, the scale check, the finding line, one precision, an aligned ANOVA, the question in
full, the note, and output folders whose every file comes from one call.

Planted data; every statistic is checked against an independent computation (scipy's t
interval, statsmodels' own pairwise_tukeyhsd, a pandas group-by), not the code's output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.special import expit
from statsmodels.stats.multicomp import pairwise_tukeyhsd

from analysis.cli import main
from analysis.figures import _cell_text, status_columns
from analysis.guards import Guarded, apply_guards
from analysis.output import default_folder
from analysis.reading import MetricResult, analyse, finding
from analysis.report import render_report
from analysis.table import AnalysisError, Study, table_from_records
from sweepmap import keys
from sweepmap.sweepfile import question
from tests.test_analysis_cli import YAML, fill

ACC = keys.VAL_ACCURACY
LRS = [1e-3, 1e-2, 1e-1]
OPTS = ["sgd", "adam", "rmsprop"]


def planted(
    values: dict[tuple[int, int], list[float]], metric: str = ACC, y: str = "optimizer",
    ys: list[Any] = OPTS,
) -> Guarded:  # fmt: skip
    """lr x optimizer (or x `y` at levels `ys`) cells (i, j) with the given seed values, as a
    guarded study."""
    seeds = max(len(v) for v in values.values())
    config = {
        "method": "grid",
        "metric": {"name": metric, "goal": "minimize" if "loss" in metric else "maximize"},
        "parameters": {
            "lr": {"values": LRS},
            y: {"values": ys},
            "seed": {"values": list(range(seeds))},
        },
    }
    records = [
        {
            "run_id": f"{i}-{j}-{s}",
            "state": "finished",
            "config": {"lr": LRS[i], y: ys[j], "seed": s, "epochs": 2},
            "summary": {metric: v, keys.EPOCHS_COMPLETED: 2},
        }
        for (i, j), vs in values.items()
        for s, v in enumerate(vs)
    ]
    study = Study("s", table_from_records(records, config), config, "", "test")
    return apply_guards(study, "lr", y)


def cells_of(mean: Any, sd: float = 0.01, seeds: int = 3, seed: int = 0) -> dict[Any, list[float]]:
    rng = np.random.default_rng(seed)
    return {
        (i, j): [float(mean(i, j) + sd * rng.normal()) for _ in range(seeds)]
        for i in range(3)
        for j in range(3)
    }


def test_ci_is_t_with_n_minus_1_and_clipped_to_the_metric_range() -> None:
    values = cells_of(lambda i, j: 0.9, sd=0.02)
    values[(0, 0)] = [0.99, 0.999, 0.97]  # its t interval runs past 1
    r = analyse(planted(values), ACC)
    for (i, j), vs in values.items():
        lo, hi = sps.t.interval(0.95, len(vs) - 1, loc=np.mean(vs), scale=sps.sem(vs))
        row = r.cells[(r.cells["lr"] == LRS[i]) & (r.cells["optimizer"] == OPTS[j])].iloc[0]
        assert (row["ci_lo"], row["ci_hi"]) == pytest.approx((max(lo, 0.0), min(hi, 1.0)))
    top = r.cells.iloc[0]
    assert top["ci_hi"] == 1.0  # clipped, not 1.02


def test_tie_set_is_tukey_hsd_against_the_best() -> None:
    values = cells_of(lambda i, j: 0.90 + 0.01 * (3 * i + j), sd=0.01)
    r = analyse(planted(values), ACC)
    cells = list(values)
    groups = np.repeat([f"{i}{j}" for i, j in cells], 3)
    res = pairwise_tukeyhsd(np.concatenate([values[c] for c in cells]), groups, alpha=0.05)
    best = max(cells, key=lambda c: np.mean(values[c]))
    names = list(res.groupsunique)
    want = {best}
    for a, b, reject in zip(*res._multicomp.pairindices, res.reject, strict=True):
        pair = {cells[[f"{i}{j}" for i, j in cells].index(names[a])],
                cells[[f"{i}{j}" for i, j in cells].index(names[b])]}  # fmt: skip
        if best in pair and not reject:
            want |= pair
    got = {(LRS.index(a), OPTS.index(b)) for a, b in r.ties.tied}
    assert got == want and 1 < len(got) < 9
    assert r.ties.family == "Tukey HSD, α=0.05, family: the 9 cells with >= 2 runs"


def test_diverged_cells_leave_the_colour_range_and_the_tie_family() -> None:
    values = cells_of(lambda i, j: 0.95 + 0.01 * i, sd=0.005)
    values[(2, 1)] = [0.2, 0.6, 0.33]  # diverged seeds: a low mean and a huge spread
    r = analyse(planted(values), ACC)
    assert r.colour.clipped == [(1e-1, "adam")] and r.colour.vmin > 0.5
    assert "1 cell(s) below it" in r.colour.how and "marked ▼" in r.colour.how
    assert r.ties.left_out == [(1e-1, "adam")]
    # With it out of the pooled variance, 0.95 is told apart from 0.97.
    assert all(a == 1e-1 for a, _ in r.ties.tied)
    # A loss over a factor of 10 or more: a log colour scale, said in the legend.
    losses = cells_of(lambda i, j: [0.05, 0.1, 2.0][i] * (1 + 0.2 * j), sd=0.002)
    r = analyse(planted(losses, keys.VAL_LOSS), keys.VAL_LOSS)
    assert r.colour.log and r.colour.how.startswith("colour: log colour scale, cell means 0.05")
    assert not analyse(planted(values), ACC).colour.log


def test_scale_check_finds_a_removable_interaction_and_keeps_a_real_one() -> None:
    # Additive on the logit scale: near 1 the ceiling alone makes a raw interaction.
    additive = cells_of(lambda i, j: 0.0, sd=0.0)
    rng = np.random.default_rng(5)
    for i, j in additive:
        additive[(i, j)] = [float(expit(2 + i + j + 0.05 * rng.normal())) for _ in range(4)]
    g = planted(additive)
    r = analyse(g, ACC)
    assert r.anova.table is not None and r.anova.table.loc["x:y", "p"] < 0.05
    assert r.scale.removable and "vanishes on logit(val/accuracy)" in r.scale.text
    assert finding(g, r).endswith(
        "on the logit scale it vanishes: maybe a ceiling, not an interaction"
    )
    # A crossing on the logit scale is an interaction on any scale.
    crossing = {
        (i, j): [float(expit(3 + 2 * (i == j) + 0.1 * rng.normal())) for _ in range(4)]
        for i in range(3)
        for j in range(3)
    }
    r = analyse(planted(crossing), ACC)
    assert not r.scale.removable and "interaction holds on logit" in r.scale.text


def test_finding_says_where_the_best_x_lies_for_each_y() -> None:
    values = cells_of(lambda i, j: 0.9 + 0.05 * (i == 2 - j), sd=0.005)  # sgd 1e-1 ... rmsprop 1e-3
    g = planted(values)
    line = finding(g, analyse(g, ACC))
    assert re.fullmatch(
        r"the best lr depends on the optimizer: sgd 1e-1, adam 1e-2, rmsprop 1e-3 "
        r"\(lr x optimizer: F=[\d.]+, p<1e-4, partial η² 0\.\d\d\)",
        line,
    ), line
    flat = planted(cells_of(lambda i, j: 0.9 + 0.02 * i, sd=0.01))
    line = finding(flat, analyse(flat, ACC))
    assert line.startswith("no evidence that the effect of lr")
    assert line.endswith("; best: sgd 1e-1, adam 1e-1, rmsprop 1e-1"), line
    numeric = planted(cells_of(lambda i, j: 0.9 + 0.02 * i, sd=0.01), y="dropout", ys=[0, 0.2, 0.4])
    line = finding(numeric, analyse(numeric, ACC))  # "best: 0 → 1e-1" would not say which is lr
    assert line.endswith("; best lr per dropout: 0 → 1e-1, 0.2 → 1e-1, 0.4 → 1e-1"), line


def _texts(g: Guarded, r: MetricResult) -> list[str]:
    status = status_columns(g, r.cells)
    by = r.cells.set_index(["lr", "optimizer"])
    return [_cell_text(by.loc[c], r, c, True, status) for c in by.index]


def test_numbers_at_one_precision_within_a_metric() -> None:
    values = cells_of(lambda i, j: 0.5 + 0.2 * i, sd=0.0004)  # tiny spreads: no 8.90e-04
    g = planted(values)
    losses = {c: [1 - v for v in vs] for c, vs in values.items()}
    for metric_values, metric in ((values, ACC), (losses, keys.VAL_LOSS)):
        g = planted(metric_values, metric)
        numbers = re.findall(r"\d+\.\d+|\d+e-?\d+", "\n".join(_texts(g, analyse(g, metric))))
        assert numbers and {len(n.split(".")[1]) for n in numbers} == {3}, numbers


def test_a_loss_that_diverged_in_some_cells_still_gives_the_best_cell_its_digits() -> None:
    """Cell means from 0.2 to 4e7 (lr 100 and 1e6 blew up): at the median's decimals the best
    cell would read "0 [0, 0]"; each number gets three significant digits instead."""
    losses = cells_of(lambda i, j: [0.214, 265.0, 3.8e7][i] * (1 + 0.1 * j), sd=0.01)
    g = planted(losses, keys.VAL_LOSS)
    r = analyse(g, keys.VAL_LOSS)
    texts = _texts(g, r)
    assert r.decimals is None
    assert re.match(r"★0\.2\d\d\n\[0\.\d+, 0\.\d+\]", texts[0]), texts[0]
    assert any("265" in t for t in texts) and any("3.8e+07" in t for t in texts), texts
    assert not any(re.search(r"(^|\D)0 \[|\[0, 0\]", t) for t in texts), texts


def test_anova_columns_stay_aligned_whatever_the_names() -> None:
    config = {
        "method": "grid",
        "parameters": {
            "filter_growth": {"values": [1.0, 2.0]},
            "bidirectional": {"values": [False, True]},
            "seed": {"values": [0, 1, 2]},
        },
    }
    records = [
        {
            "run_id": f"{a}-{b}-{s}",
            "state": "finished",
            "config": {"filter_growth": a, "bidirectional": b, "seed": s, "epochs": 2},
            "summary": {ACC: 0.9 + 0.01 * s + 0.02 * a * b, keys.EPOCHS_COMPLETED: 2},
        }
        for a in (1.0, 2.0)
        for b in (False, True)
        for s in range(3)
    ]
    study = Study("s", table_from_records(records, config), config, "", "test")
    lines = analyse(apply_guards(study, "filter_growth", "bidirectional"), ACC).anova.lines()
    assert lines[4].startswith("filter_growth:bidirectional ")
    ends = {m.end() for m in (re.match(r"\S+\s+\d+", line) for line in lines[2:]) if m}
    assert len(lines) == 6 and len(ends) == 1  # every df ends in one column


def test_question_is_the_description_or_the_first_comment_paragraph_without_grid() -> None:
    text = (
        "# Does A depend on B?\n# Context line.\n# Grid: 2 x 2 x 3 = 12 runs.\n#\n# Notes.\nx: 1\n"
    )
    assert question(text, {}) == "Does A depend on B? Context line."
    assert question(text, {"description": "  Asked\n in  full. "}) == "Asked in full."
    assert question(YAML.read_text(), {}).endswith("it is adam, run for run.")


def test_page_fits_the_question_in_full_the_note_and_names_csv_only_metrics() -> None:
    g = planted(cells_of(lambda i, j: 0.9 + 0.01 * i))
    long_q = " ".join(["Does the learning rate matter more for some optimizers than others?"] * 6)
    g.study.sweep_config["description"] = long_q
    for m in (keys.VAL_LOSS, keys.VAL_F1, keys.BEST_VAL_ACCURACY):
        g.runs[m] = g.runs[ACC] * 0.5
    results = [analyse(g, m) for m in (ACC, keys.VAL_LOSS, keys.VAL_F1, keys.BEST_VAL_ACCURACY)]
    note = "My reading: adam is robust.\n\nsgd needs a large lr."
    page = render_report(g, results, "python -m analysis report", note=note)
    texts = [t.get_text() for t in page.texts]
    plt.close(page)
    assert any(" ".join(t.split()) == long_q for t in texts)  # wrapped, never cut
    assert any(t.startswith("My reading: adam is robust.\nsgd needs a large lr.") for t in texts)
    assert any("in the CSVs only: pivot_best_val_accuracy.csv" in t for t in texts)
    with pytest.raises(AnalysisError, match=r"--note: \d+ characters do not fit"):
        render_report(g, results, "cmd", note="word " * 3000)


def test_each_call_writes_its_own_folder_with_a_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name, _ = fill(tmp_path / "store")
    assert default_folder(name, "heatmap", "lr", "optimizer") != default_folder(
        name, "heatmap", "optimizer", "lr"
    )
    monkeypatch.chdir(tmp_path)
    folder = default_folder(name, "heatmap", "lr", "optimizer")
    argv = ["heatmap", "--store", "store", "--metric"]
    assert main([*argv, keys.BEST_VAL_ACCURACY]) == 0
    assert (folder / "heatmap_best_val_accuracy.svg").is_file()
    (folder / "anova_val_loss.csv").write_text("from an earlier call\n")  # stale: must go
    assert main([*argv, keys.VAL_LOSS]) == 0
    capsys.readouterr()
    files = {p.name for p in folder.iterdir()}
    assert not any("best_val_accuracy" in f for f in files)  # the earlier call's files are gone
    # The empty cell leaves this ANOVA untested: no ANOVA file, and the stale one is gone.
    assert "anova_val_loss.csv" not in files
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) | {"manifest.json"} == files
    assert {"pivot_val_loss.csv", "heatmap_val_loss.svg", "interaction_val_loss.png"} <= files
    assert manifest["x"] == "lr" and manifest["metrics"] == [keys.VAL_LOSS]
    assert pd.read_csv(folder / "pivot_val_loss.csv")["n"].sum() == 33  # 36 less 3 failed

"""The heatmap custom chart: a Vega-Lite spec stored once per entity, and the rows it draws.

wandb has no heatmap panel. `wandb.Api().create_custom_chart` (wandb >= 0.21; the pinned
0.31 has it) stores a spec under ENTITY/NAME; `wandb.plot_table(ENTITY/NAME, table, fields)`
then draws a run's table with it. The fields are filled per table: x, y, the colour value
and the label text.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.guards import Guarded
from analysis.reading import MetricResult

CHART_NAME = "sweepmap-heatmap"
CHART_TITLE = "sweepmap heatmap (mean per cell; n and CI in the tooltip)"

# Vega-Lite v5: one rect per cell coloured by the mean, with the mean printed on it; empty
# cells (no finished run) stay in the table with a null mean and are drawn grey.
SPEC: dict[str, Any] = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "data": {"name": "wandb"},
    "title": "${string:title}",
    "encoding": {
        "x": {"field": "${field:x}", "type": "ordinal", "sort": None},
        "y": {"field": "${field:y}", "type": "ordinal", "sort": None},
    },
    "layer": [
        {
            "mark": "rect",
            "encoding": {
                "color": {
                    "field": "${field:color}",
                    "type": "quantitative",
                    "scale": {"scheme": "viridis"},
                },
                "tooltip": [
                    {"field": "${field:x}"},
                    {"field": "${field:y}"},
                    {"field": "${field:color}"},
                    {"field": "${field:n}"},
                    {"field": "${field:ci}"},
                ],
            },
        },
        {
            "mark": {"type": "text", "fontSize": 11},
            "encoding": {"text": {"field": "${field:label}"}},
        },
    ],
}

COLUMNS = ["x", "y", "mean", "std", "n", "ci_lo", "ci_hi", "ci", "tied_with_best", "label"]


def cell_rows(g: Guarded, r: MetricResult) -> pd.DataFrame:
    """The cell table: x and y as the page labels them, mean, std, n, the 95% CI (t), whether
    the cell is tied with the best (the page's test), and the text the chart prints."""
    tied = {(a, b) for a, b in r.ties.tied}
    rows = []
    for _, c in r.cells.iterrows():
        has = c["n"] > 0 and pd.notna(c["mean"])
        ci = f"[{r.fmt(c['ci_lo'])}, {r.fmt(c['ci_hi'])}]" if pd.notna(c["ci_lo"]) else ""
        rows.append(
            {
                "x": g.label(g.x, c[g.x]),
                "y": g.label(g.y, c[g.y]),
                "mean": float(c["mean"]) if has else None,
                "std": float(c["std"]) if pd.notna(c["std"]) else None,
                "n": int(c["n"]),
                "ci_lo": float(c["ci_lo"]) if pd.notna(c["ci_lo"]) else None,
                "ci_hi": float(c["ci_hi"]) if pd.notna(c["ci_hi"]) else None,
                "ci": ci,
                "tied_with_best": (c[g.x], c[g.y]) in tied,
                "label": (("★ " if (c[g.x], c[g.y]) == r.ties.best else "") + r.fmt(c["mean"]))
                if has
                else "no run",
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def chart_fields(g: Guarded) -> dict[str, str]:
    """`wandb.plot_table` fields: the spec's ${field:...} names -> the cell table's columns."""
    return {"x": "x", "y": "y", "color": "mean", "n": "n", "ci": "ci", "label": "label"}

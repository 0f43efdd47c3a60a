"""`python -m analysis publish`: the analysis as one run in the sweep's wandb project.

The run (job_type "analysis", in the group of the sweep's runs) holds, per metric: the heatmap
and interaction plot as `wandb.Image`, the cell table (x, y, mean, std, n, CI, tied with the
best) as a `wandb.Table`, the same table drawn by a heatmap custom chart, the ANOVA as a
table, and the finding line in the summary; the report page (PDF, PNG) with the pivots and
ANOVA CSVs is an artifact of type "report". It prints the run's URL.

A second publish of the same analysis (same project, sweep and axes) updates that run: its
id is derived from them and it is resumed, and the artifact gets a new version, not a copy.
Runs cannot be an artifact's inputs in wandb (only artifacts can), so the sweep's run ids go
into the artifact's metadata instead.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from analysis.cli import load_study, reproduce
from analysis.design import axes_of, choose_metrics
from analysis.figures import heatmap_figure, interaction_figure
from analysis.guards import Guarded, apply_guards
from analysis.labels import slug
from analysis.output import write_outputs
from analysis.publish_chart import CHART_NAME, CHART_TITLE, SPEC, cell_rows, chart_fields
from analysis.reading import MetricResult, analyse, finding
from analysis.report import render_report
from analysis.table import AnalysisError, Study
from analysis.wandbsrc import parse_path
from sweepmap.wandb_exit import wandb_error

# Set by `wandb agent` for its runs: inside a sweep wandb.init ignores project and id, so an
# analysis published from an agent's shell would land in the sweep as one of its runs.
AGENT_VARS = ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH", "WANDB_RESUME")


def target(args: argparse.Namespace, study: Study) -> tuple[str | None, str, str]:
    """(entity, project, group) the analysis run goes to."""
    if args.wandb:
        entity, project, sweep_id = parse_path(args.wandb)
        # Cloud sweep runs carry no group of their own; the sweep id names the analysis's.
        return args.entity or entity, args.project or project, sweep_id
    if not args.project:
        raise AnalysisError("publish of a local sweep: --project P (the one it was synced to)")
    # Local runs, once synced, carry the sweep's name as their group (agents/contract.py).
    return args.entity, args.project, study.name


def run_id(entity: str | None, project: str, study: Study, x: str, y: str) -> str:
    """The same analysis always gets the same run: derived from where and what it is."""
    key = f"{entity}/{project}/{study.name}/{x}/{y}".encode()
    return f"analysis-{hashlib.sha1(key).hexdigest()[:12]}"


def check_server() -> None:
    """No key or no network: one line now, not a wandb.init that waits 90 s."""
    import wandb

    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        raise AnalysisError(f"WANDB_MODE={os.environ['WANDB_MODE']}: publish needs the server")
    try:
        wandb.Api().viewer  # noqa: B018  (the Viewer query: key and server, in one request)
    except Exception as err:
        raise AnalysisError(f"publish: wandb: {wandb_error(err)}") from None


def heatmap_chart(entity: str) -> str | None:
    """ENTITY/sweepmap-heatmap, created on first use; None when the server cannot store it."""
    import wandb

    chart = f"{entity}/{CHART_NAME}"
    try:
        made = wandb.Api().create_custom_chart(
            entity=entity, name=CHART_NAME, display_name=CHART_TITLE,
            spec_type="vega2", access="private", spec=SPEC,
        )  # fmt: skip
        return str(made)
    except Exception as err:
        if "exist" in str(err).lower():  # made by an earlier publish: use it
            return chart
        print(f"publish: no custom chart ({type(err).__name__}: {err}); images and tables only")
        return None


def _files(args: argparse.Namespace, study: Study, g: Guarded, results: list[MetricResult],
           folder: Path) -> list[Path]:  # fmt: skip
    """The report page, heatmaps, pivots and ANOVA tables, as `report`/`heatmap` write them."""
    figures, tables, what = {}, {}, {}
    for r in results:
        figures[f"heatmap_{slug(r.metric)}.png"] = heatmap_figure(g, r)
        tables[f"pivot_{slug(r.metric)}.csv"] = r.cells.to_csv(index=False)
        if r.anova.table is not None:
            tables[f"anova_{slug(r.metric)}.csv"] = r.anova.table.to_csv(index_label="role")
    page = render_report(g, results, reproduce(args, study), None)
    figures["report.png"] = figures["report.pdf"] = page
    what["report.pdf"] = what["report.png"] = "the one-page A4 report"
    info = {"sweep": study.name, "source": study.origin, "x": g.x, "y": g.y}
    return write_outputs(folder, figures, tables, what, info)


def publish(args: argparse.Namespace) -> str:
    """Analyse, then log it all into one run; the run's URL."""
    check_server()
    args.refresh = True  # what is published is the sweep as it is now, not a cached copy
    study = load_study(args)
    x, y = axes_of(study, args.x, args.y)
    g = apply_guards(study, x, y, allow_mixed_budgets=args.allow_mixed_budgets)
    metrics, notes = choose_metrics(study, args.metric)
    g.notes.extend(notes)
    results = [analyse(g, m) for m in metrics]
    entity, project, group = target(args, study)

    import wandb

    for var in AGENT_VARS:
        os.environ.pop(var, None)
    config = {"sweep": study.name, "source": study.origin, "x": x, "y": y, "metrics": metrics}
    run = wandb.init(
        entity=entity, project=project, id=run_id(entity, project, study, x, y),
        resume="allow", job_type="analysis", group=group, config=config,
        name=f"analysis {study.name}: {x} x {y}", reinit="create_new",
    )  # fmt: skip
    chart = heatmap_chart(run.entity)
    data: dict[str, Any] = {}
    for r in results:
        m = r.metric
        cells = wandb.Table(dataframe=cell_rows(g, r))
        data[f"heatmap/{m}"] = wandb.Image(heatmap_figure(g, r), caption=finding(g, r))
        data[f"interaction/{m}"] = wandb.Image(interaction_figure(g, r))
        data[f"cells/{m}"] = cells
        if chart is not None:
            title = {"title": f"{m} ({r.goal})"}
            data[f"chart/{m}"] = wandb.plot_table(chart, cells, chart_fields(g), title)
        if r.anova.table is not None:
            data[f"anova/{m}"] = wandb.Table(dataframe=r.anova.table.reset_index(names="role"))
        run.summary[f"finding/{m}"] = finding(g, r)
        run.summary[f"anova/{m}"] = " | ".join(r.anova.lines())
    run.summary["progress"] = g.progress.line()
    run.log(data)
    with tempfile.TemporaryDirectory(prefix="sweepmap-publish-") as tmp:
        paths = _files(args, study, g, results, Path(tmp))
        art = wandb.Artifact(
            f"report-{slug(study.name)}-{slug(x)}-{slug(y)}", type="report",
            description=f"one-page report of {study.name} ({x} x {y})",
            metadata={**config, "findings": {r.metric: finding(g, r) for r in results},
                      "runs": sorted(str(i) for i in study.table["run_id"])},
        )  # fmt: skip
        for path in paths:
            art.add_file(str(path))
        run.log_artifact(art)
        url = str(run.url)
        run.finish()  # uploads before the folder goes
    return url


def main_publish(args: argparse.Namespace) -> int:
    try:
        url = publish(args)
    except AnalysisError as err:
        print(f"python -m analysis: error: {err}", file=sys.stderr)
        return 2
    print(url)
    return 0

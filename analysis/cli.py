"""`python -m analysis heatmap|report`: load, check, draw, then write everything at once.

Every input is checked and every figure drawn before the first file is written, and the
files go to a temporary folder first: a refused analysis leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from analysis.figures import heatmap_figure, interaction_figure
from analysis.guards import Guarded, apply_guards
from analysis.labels import slug
from analysis.report import render_report
from analysis.stats import anova, describe_best, pivot
from analysis.table import AnalysisError, Study, axes_of, build_table, check_metrics
from analysis.wandbsrc import DEFAULT_CACHE, load_wandb
from localsweep.grid import load_sweep
from sweepmap.sweepfile import SweepError

DEFAULT_STORE = ".sweepmap"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other refusal of this tool (argparse adds the usage block).
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m analysis", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, doc in (
        ("heatmap", "heatmaps, interaction plots, pivots (CSV) and ANOVA per metric"),
        ("report", "the one-page A4 report (PDF and PNG); prints its path last"),
    ):
        s = sub.add_parser(name, help=doc, description=doc)
        src = s.add_argument_group("source (a local store by default)")
        src.add_argument("--store", metavar="DIR", help=f"local store (default {DEFAULT_STORE})")
        src.add_argument("--sweep", metavar="NAME", help="sweep name in the store")
        src.add_argument("--yaml", metavar="FILE", help="find the sweep by its YAML file")
        src.add_argument("--wandb", metavar="ENTITY/PROJECT/SWEEP_ID", help="a wandb sweep")
        src.add_argument("--refresh", action="store_true", help="fetch from wandb again")
        src.add_argument(
            "--cache-dir",
            default=str(DEFAULT_CACHE),
            metavar="DIR",
            help=f"where wandb fetches are kept (default {DEFAULT_CACHE})",
        )
        s.add_argument(
            "--metric",
            action="append",
            metavar="M",
            help="summary metric (repeatable); default best/val/accuracy, val/accuracy, val/loss",
        )
        s.add_argument("--x", help="parameter on the x axis (default: first varied, not seed)")
        s.add_argument("--y", help="parameter on the y axis (default: second varied)")
        s.add_argument("--out", metavar="DIR", help="output folder (default reports/<sweep>/)")
        s.add_argument(
            "--allow-mixed-budgets",
            action="store_true",
            help="draw runs of different epochs or incomplete runs together",
        )
    return p


def load_study(args: argparse.Namespace) -> Study:
    if args.wandb:
        if args.store or args.sweep:
            raise AnalysisError("--wandb and --store/--sweep: choose one source")
        study = load_wandb(args.wandb, args.cache_dir, refresh=args.refresh)
        if args.yaml:  # the file keeps the comments (the question) that the server drops
            try:
                text, _ = load_sweep(args.yaml)
            except SweepError as err:
                raise AnalysisError(str(err)) from None
            study = Study(
                study.name, study.table, study.sweep_config, text, study.origin, args.yaml
            )
        return study
    return build_table(args.store or DEFAULT_STORE, args.sweep, args.yaml)


def reproduce(args: argparse.Namespace, study: Study) -> str:
    """The commands that remake this output from nothing (runs included, where known)."""
    cmd = ["python", "-m", "analysis", args.command]
    runs = ""
    if args.wandb:
        cmd += ["--wandb", args.wandb, "--refresh"]
        runs = f"wandb agent {args.wandb} && "
    else:
        store = args.store or DEFAULT_STORE
        cmd += ["--store", store]
        if study.yaml_path:
            cmd += ["--yaml", study.yaml_path]
            runs = f"python -m localsweep run {shlex.quote(study.yaml_path)} --store {store} && "
        else:
            cmd += ["--sweep", study.name]
    for metric in args.metric or []:
        cmd += ["--metric", metric]
    for flag in ("x", "y", "out"):
        if getattr(args, flag):
            cmd += [f"--{flag}", getattr(args, flag)]
    if args.allow_mixed_budgets:
        cmd.append("--allow-mixed-budgets")
    return runs + shlex.join(cmd)


def _write(out: Path, figures: dict[str, Figure], tables: dict[str, str]) -> list[Path]:
    """Everything into a temporary folder beside `out`, then moved in: all or nothing."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    try:
        for name, fig in figures.items():
            fig.savefig(tmp / name, dpi=150)
        for name, text in tables.items():
            (tmp / name).write_text(text)
        paths = []
        for name in [*figures, *tables]:
            os.replace(tmp / name, out / name)
            paths.append(out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for fig in figures.values():
            plt.close(fig)
    return paths


def run(args: argparse.Namespace) -> list[Path]:
    study = load_study(args)
    x, y = axes_of(study, args.x, args.y)
    metrics = check_metrics(study, args.metric)
    g: Guarded = apply_guards(study, x, y, allow_mixed_budgets=args.allow_mixed_budgets)
    out = Path(args.out) if args.out else Path("reports") / study.name
    for note in g.notes:
        print(note)
    cells = {m: pivot(g, m) for m in metrics}
    results = {m: anova(g, m, cells[m]) for m in metrics}
    for m in metrics:
        print(describe_best(g, cells[m], m))
        print("\n".join(results[m].lines()))
    figures: dict[str, Figure] = {}
    tables: dict[str, str] = {}
    if args.command == "heatmap":
        for m in metrics:
            heat, inter = heatmap_figure(g, cells[m], m), interaction_figure(g, cells[m], m)
            for ext in ("png", "svg"):
                figures[f"heatmap_{slug(m)}.{ext}"] = heat
                figures[f"interaction_{slug(m)}.{ext}"] = inter
            tables[f"pivot_{slug(m)}.csv"] = cells[m].to_csv(index=False)
            table = results[m].table
            if table is not None:
                tables[f"anova_{slug(m)}.csv"] = table.to_csv(index_label="term")
    else:
        page = render_report(g, metrics, cells, results[metrics[0]], reproduce(args, study))
        for m in metrics:
            tables[f"pivot_{slug(m)}.csv"] = cells[m].to_csv(index=False)
        figures["report.png"] = page
        figures["report.pdf"] = page  # last: the report command prints its path last
    paths = _write(out, figures, tables)
    if args.command == "report":
        paths.sort(key=lambda p: p.suffix == ".pdf")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        paths = run(args)
    except AnalysisError as err:
        print(f"python -m analysis: error: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0

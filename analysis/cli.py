"""`python -m analysis heatmap|report|inspect`: load, check, draw, then write it all at once.

Every input is checked and every figure drawn before the first file is written, and the
files go to a temporary folder first: a refused analysis leaves nothing half-written. Each
call writes its own folder (one per sweep, command and axes) with a manifest of its files.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from matplotlib.figure import Figure

from analysis.design import axes_of, choose_metrics
from analysis.figures import heatmap_figure, interaction_figure, legend_lines
from analysis.guards import Guarded, apply_guards
from analysis.importance_cmd import add_arguments as importance_arguments
from analysis.importance_cmd import run_importance
from analysis.inspect_runs import DEFAULT_SAMPLES, run_inspect
from analysis.labels import slug
from analysis.output import default_folder, write_outputs
from analysis.reading import MetricResult, analyse, finding
from analysis.report import render_report
from analysis.table import AnalysisError, Study, build_table
from analysis.wandbsrc import DEFAULT_CACHE, load_wandb
from sweepmap.sweepfile import SweepError, read_sweep
from sweepmap.wandb_exit import close_wandb

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
        ("publish", "the analysis as one wandb run and a report artifact; prints its URL"),
        ("inspect", "what the best cell (or --run) got wrong: confused pairs and samples (PNG)"),
    ):
        s = sub.add_parser(name, help=doc, description=doc)
        _source_arguments(s)
        s.add_argument(
            "--metric",
            action="append",
            metavar="M",
            help="summary metric (repeatable); default: the sweep's metric, then "
            "best/val/accuracy, val/accuracy, val/loss",
        )
        s.add_argument("--x", help="parameter on the x axis (default: first varied, not seed)")
        s.add_argument("--y", help="parameter on the y axis (default: second varied)")
        s.add_argument(
            "--out",
            metavar="DIR",
            help="output folder (default reports/<sweep>/<command>_<x>_<y>/)",
        )
        if name == "report":
            notes = s.add_mutually_exclusive_group()
            notes.add_argument("--note", metavar="TEXT", help="your reading, in the free space")
            notes.add_argument("--note-file", metavar="FILE", help="the note from a text file")
        if name == "inspect":
            s.add_argument("--run", metavar="ID", help="this run instead of the best cell's runs")
            s.add_argument(
                "--samples", type=int, default=DEFAULT_SAMPLES, metavar="N",
                help=f"misclassified samples drawn (default {DEFAULT_SAMPLES})",
            )  # fmt: skip
        if name == "publish":  # analysis/publish.py
            s.add_argument("--project", help="wandb project (default: the --wandb sweep's)")
            s.add_argument("--entity", help="wandb entity (default: the --wandb sweep's)")
        s.add_argument(
            "--allow-mixed-budgets",
            action="store_true",
            help="draw runs of different epochs or incomplete runs together",
        )
    doc = "a scan's main effects and pair interactions (fANOVA); the top pair's grid"
    s = sub.add_parser("importance", help=doc, description=doc)
    _source_arguments(s)
    importance_arguments(s)  # analysis/importance_cmd.py
    return p


def _source_arguments(s: argparse.ArgumentParser) -> None:
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


def load_study(args: argparse.Namespace) -> Study:
    if args.wandb:
        if args.store or args.sweep:
            raise AnalysisError("--wandb and --store/--sweep: choose one source")
        study = load_wandb(args.wandb, args.cache_dir, refresh=args.refresh)
        if args.yaml:  # the file keeps the comments (the question) that the server drops
            try:
                text, _ = read_sweep(args.yaml)
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
    for flag in ("x", "y", "out", "note_file"):
        if getattr(args, flag, None):
            cmd += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    if getattr(args, "note", None):
        cmd += ["--note", "..."]  # the note is on the page; the command stays short
    if args.allow_mixed_budgets:
        cmd.append("--allow-mixed-budgets")
    return runs + shlex.join(cmd)


def _note(args: argparse.Namespace) -> str | None:
    if getattr(args, "note_file", None):
        try:
            return Path(args.note_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise AnalysisError(f"--note-file {args.note_file}: cannot read ({err})") from None
    return getattr(args, "note", None)


def _print(g: Guarded, results: list[MetricResult]) -> None:
    for note in g.notes:
        print(note)
    for r in results:
        print(f"finding ({r.metric}, goal {r.goal}): {finding(g, r)}")
        print("\n".join(legend_lines(g, r)[1:]))
        if r.ties.best is not None:
            tied = [g.where(a, b, "/") for a, b in r.ties.tied]
            print(
                f"tied with the best ({len(tied)} incl. ★ {tied[0]}): {', '.join(tied[1:]) or '-'}"
            )
            if r.ties.left_out:
                out = ", ".join(g.where(a, b, "/") for a, b in r.ties.left_out)
                print(f"left out of the tie test: {out}")
        print("two-way ANOVA of " + "\n".join(r.anova.lines()))
        if r.scale.text:
            print(r.scale.text)


def run(args: argparse.Namespace) -> list[Path]:
    study = load_study(args)
    if args.command == "importance":
        return run_importance(args, study)
    if args.command == "inspect":
        return run_inspect(args, study, reproduce(args, study))
    x, y = axes_of(study, args.x, args.y)
    g: Guarded = apply_guards(study, x, y, allow_mixed_budgets=args.allow_mixed_budgets)
    metrics, metric_notes = choose_metrics(study, args.metric)
    g.notes.extend(metric_notes)
    note = _note(args)
    results = [analyse(g, m) for m in metrics]
    out = Path(args.out) if args.out else default_folder(study.name, args.command, x, y)
    figures: dict[str, Figure] = {}
    tables: dict[str, str] = {}
    what: dict[str, str] = {}
    for r in results:
        name = f"pivot_{slug(r.metric)}.csv"
        tables[name] = r.cells.to_csv(index=False)
        what[name] = f"{r.metric} per cell: mean, std, n, 95% CI (t), points without a result"
    if args.command == "heatmap":
        for r in results:
            heat, inter = heatmap_figure(g, r), interaction_figure(g, r)
            for ext in ("png", "svg"):
                figures[f"heatmap_{slug(r.metric)}.{ext}"] = heat
                figures[f"interaction_{slug(r.metric)}.{ext}"] = inter
                what[f"heatmap_{slug(r.metric)}.{ext}"] = f"heatmap of {r.metric}"
                what[f"interaction_{slug(r.metric)}.{ext}"] = f"interaction plot of {r.metric}"
            if r.anova.table is not None:
                name = f"anova_{slug(r.metric)}.csv"
                tables[name] = r.anova.table.to_csv(index_label="role")
                what[name] = f"two-way ANOVA of {r.metric}"
    else:
        page = render_report(g, results, reproduce(args, study), note)
        figures["report.png"] = page
        figures["report.pdf"] = page  # last: the report command prints its path last
        what["report.png"] = what["report.pdf"] = "the one-page A4 report"
    _print(g, results)
    info: dict[str, Any] = {
        "command": args.command,
        "sweep": study.name,
        "source": study.origin,
        "x": x,
        "y": y,
        "metrics": metrics,
        "progress": g.progress.line(),
        "reproduce": reproduce(args, study),
    }
    paths = write_outputs(out, figures, tables, what, info)
    if args.command == "report":
        paths.sort(key=lambda p: p.suffix == ".pdf")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(parser().parse_args(argv))
    finally:
        close_wandb()  # not wandb's atexit wait, which can last forever (sweepmap/wandb_exit.py)


def _main(args: argparse.Namespace) -> int:
    if args.command == "publish":
        from analysis.publish import main_publish

        return main_publish(args)
    try:
        paths = run(args)
    except AnalysisError as err:
        print(f"python -m analysis: error: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0

"""`python -m analysis importance`: which pair of a scan interacts, and the grid to study it.

Everything is checked and computed before the first file is written; a refusal is one line
(exit 2) and writes nothing, the emitted grid included.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import emit_grid
from analysis.output import write_outputs
from analysis.scan_runs import History, Param, at_budget, design, is_scan, scan_params
from analysis.table import DB_NAME, AnalysisError, Study, metric_columns
from analysis.wandbsrc import cache_path, parse_path
from localsweep.store import Store
from sweepmap import keys
from sweepmap.sweepfile import metric as sweep_metric
from sweepmap.wandb_exit import wandb_error

# analysis.importance (scikit-learn, ~0.3 s) and its figure are imported where they are
# used: the other commands of `python -m analysis` do not pay for them.
INTERVAL = 0.90  # of the bootstrap percentile interval
MIN_BOOTSTRAP = 20  # fewer and a 90% interval is read off one or two replicates
MIN_RUNS, RUNS_PER_PARAM = 10, 3
WEAK = 0.05  # a pair share below this is no interaction to study (tests: additive < 0.03)


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--metric", metavar="M", help="default: the scan's metric")
    s.add_argument("--budget", type=int, metavar="N", help="epochs at which runs are compared")
    s.add_argument("--bootstrap", type=int, default=200, metavar="B", help="resamples (200)")
    s.add_argument("--seed", type=int, default=0, help="of the bootstrap and the trees (0)")
    s.add_argument("--emit-grid", metavar="FILE", help="write the top pair's grid sweep here")
    s.add_argument("--force", action="store_true", help="overwrite the --emit-grid file")
    s.add_argument(
        "--out", metavar="DIR", help="output folder (default reports/<sweep>/importance/)"
    )


def histories(args: argparse.Namespace, study: Study) -> History:
    if args.wandb:
        return wandb_histories(
            args.wandb, list(study.table["run_id"]), args.cache_dir, args.refresh
        )
    root = Path(args.store or ".sweepmap")
    if not (root / DB_NAME).is_file():
        return {}
    store = Store(root, create=False)
    try:
        return {str(r): store.history(str(r)) for r in study.table["run_id"]}
    finally:
        store.close()


def wandb_histories(path: str, run_ids: list[str], cache_dir: str, refresh: bool) -> History:
    """Each run's per-epoch rows, cached beside the runs' cache (a stopped run's value at a
    rung is in its history only)."""
    file = cache_path(path, cache_dir).with_suffix(".history.json")
    have: History = {} if refresh or not file.is_file() else json.loads(file.read_text())
    missing = [r for r in run_ids if r not in have]
    if missing:
        entity, project, _ = parse_path(path)
        try:
            import wandb

            api = wandb.Api()
            for run_id in missing:
                rows = api.run(f"{entity}/{project}/{run_id}").history(
                    samples=100_000, pandas=False
                )
                have[run_id] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        except Exception as err:  # network, auth: one line, not a traceback
            raise AnalysisError(f"--wandb {path}: history: {wandb_error(err)}") from None
        file.parent.mkdir(parents=True, exist_ok=True)
        file.with_suffix(".tmp").write_text(json.dumps(have))
        file.with_suffix(".tmp").replace(file)
    return have


def choose_metric(study: Study, asked: str | None, history: History) -> tuple[str, str]:
    """(metric, goal): --metric, else the scan's own; it must be logged by some run."""
    own = sweep_metric(study.sweep_config)
    name = asked or (own[0] if own else keys.VAL_ACCURACY)
    logged = set(metric_columns(study.table, study.sweep_config))
    logged |= {k for rows in history.values() for r in rows for k in r if k != keys.EPOCH}
    if name not in logged:
        close = difflib.get_close_matches(name, sorted(logged), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        flag = "--metric" if asked else "metric.name"
        raise AnalysisError(
            f"{flag} {name!r}: no run of {study.name} logged it; {hint}"
            f"allowed: {', '.join(sorted(logged)) or 'none (no run has logged anything yet)'}"
        )
    return name, study.goal(name)


def _check_args(args: argparse.Namespace) -> None:
    if args.bootstrap < MIN_BOOTSTRAP:
        raise AnalysisError(f"--bootstrap {args.bootstrap}: at least {MIN_BOOTSTRAP}")
    if args.budget is not None and args.budget < 1:
        raise AnalysisError(f"--budget {args.budget}: epochs, at least 1")
    if args.emit_grid:
        emit_grid.check_target(Path(args.emit_grid), args.force)


def _check_scan(study: Study) -> list[Param]:
    where = study.yaml_path or study.name
    method = study.sweep_config.get("method")
    if not is_scan(study.sweep_config):
        raise AnalysisError(
            f"{where}: method: {method}: importance reads a scan (method: random or bayes); "
            "a grid's interaction is tested by its own ANOVA: python -m analysis report"
        )
    params, _ = scan_params(study.sweep_config)
    if len(params) < 2:
        names = ", ".join(p.name for p in params) or "none"
        raise AnalysisError(
            f"{where}: parameters: {len(params)} varied besides seed ({names}); "
            "a pair needs at least 2"
        )
    return params


def run_importance(args: argparse.Namespace, study: Study) -> list[Path]:
    _check_args(args)
    params = _check_scan(study)
    _, param_notes = scan_params(study.sweep_config)
    history = histories(args, study)
    metric, goal = choose_metric(study, args.metric, history)
    at = at_budget(study, history, metric, args.budget, params)
    need = max(MIN_RUNS, RUNS_PER_PARAM * len(params))
    if len(at.runs) < need:
        raise AnalysisError(
            f"sweep {study.name}: {at.line}; importance needs at least {need} runs "
            f"({RUNS_PER_PARAM} per varied parameter, at least {MIN_RUNS})"
        )
    from analysis.importance import QUANTILES, TREES, bootstrap
    from analysis.importance_fig import importance_figure

    x = design(at.runs, params)
    boot = bootstrap(
        x, at.runs["y"].to_numpy(), [p.categorical for p in params], args.bootstrap, args.seed
    )
    table = boot.table(INTERVAL)
    pairs = table[table["kind"] == "pair"]
    top = pairs.iloc[0]
    verdict = (
        f"study {top['parameters']}: interaction share {_share(top)}, "
        f"first in {top['first']:.0%} of {args.bootstrap} bootstraps"
    )
    lines = [
        f"scan {study.name} ({study.origin}): method {study.sweep_config.get('method')}"
        + _early(study)
        + f"; metric {metric} (goal {goal})",
        f"{at.line} [{at.why}]",
        *param_notes,
        f"surrogate: {TREES} extra trees (min 2 runs per leaf) on {len(params)} parameters; "
        f"fANOVA (Hutter, Hoos and Leyton-Brown 2014) over the product of each parameter's "
        f"levels (categories; {QUANTILES} quantiles of a continuous one, log10 for log "
        f"distributions); {args.bootstrap} bootstraps over runs: median, {INTERVAL:.0%} interval",
    ]
    verdict += _caution(pairs)
    print("\n".join(lines))
    print(format_table(table))
    print(verdict)
    emitted = _emit(args, study, params, at, goal, top, metric) if args.emit_grid else None
    out = Path(args.out) if args.out else Path("reports") / study.name / "importance"
    title = (
        f"{study.name}: which parameters matter for {metric}, and which pairs interact\n{at.line}"
    )
    fig = importance_figure(boot, table, params, metric, goal, title, INTERVAL)
    info: dict[str, Any] = {
        "command": "importance", "sweep": study.name, "source": study.origin, "metric": metric,
        "budget": at.budget, "runs": at.line, "verdict": verdict, "reproduce": reproduce(args),
        "emitted": args.emit_grid,
    }  # fmt: skip
    what = {
        "importance.png": "main effects, pair interactions (intervals), the top pair's surface",
        "importance.csv": "every main effect and pair: median share, interval, share first",
        "importance.md": "the ranked table and the verdict",
    }
    tables = {
        "importance.csv": table.to_csv(index=False),
        "importance.md": markdown(table, lines, verdict),
    }
    paths = write_outputs(out, {"importance.png": fig}, tables, what, info)
    if emitted is not None:
        emit_grid.write(Path(args.emit_grid), emitted.text)
        print(f"grid {emitted.design}: python -m localsweep run {shlex.quote(args.emit_grid)}")
        paths.append(Path(args.emit_grid))
    return paths


def _emit(
    args: argparse.Namespace, study: Study, params: list[Param], at: Any, goal: str,
    top: pd.Series, metric: str,
) -> emit_grid.Emitted:  # fmt: skip
    by = {p.name: p for p in params}
    a, b = by[str(top["a"])], by[str(top["b"])]
    if a.categorical and not b.categorical:  # the continuous one asks, the category answers
        a, b = b, a
    epochs = int(pd.to_numeric(study.table["epochs"], errors="coerce").max())
    header = [
        f"Emitted by `python -m analysis importance` from the scan {study.name}: {metric} at "
        f"{at.line}. {a.name} x {b.name}: interaction share {_share(top)} (median, "
        f"{INTERVAL:.0%} bootstrap interval), the first pair in {top['first']:.0%} of "
        f"{args.bootstrap} bootstraps.",
    ]
    emitted = emit_grid.emit(study.sweep_config, (a, b), at.runs, goal, epochs, header)
    from localsweep.grid import check_sweep  # the grid checks `localsweep run` applies
    from sweepmap.sweepfile import SweepError

    try:
        check_sweep(emitted.config, args.emit_grid)
    except SweepError as err:
        raise AnalysisError(f"the grid for {a.name} x {b.name} is not runnable: {err}") from None
    return emitted


def _caution(pairs: pd.DataFrame) -> str:
    """What the verdict cannot claim: a pair that is not clearly first, or no interaction."""
    top = pairs.iloc[0]
    if top["share"] < WEAK:
        return (
            f"; WARNING no pair reaches a share of {WEAK}: the scan shows no interaction "
            "worth a grid (the main effects say which single parameters matter)"
        )
    if top["first"] < 0.5:
        return (
            f"; WARNING it is first in only {top['first']:.0%} of the bootstraps: the ranking "
            "is not sure; more runs would tell"
        )
    if len(pairs) > 1 and top["lo"] <= pairs.iloc[1]["share"]:
        second = pairs.iloc[1]
        return (
            f"; WARNING its interval reaches the median of {second['parameters']} "
            f"({second['share']:.2f}): the ranking is not sure; more runs would tell"
        )
    return ""


def _early(study: Study) -> str:
    rule = study.sweep_config.get("early_terminate")
    return f", early_terminate {rule.get('type', '?')}" if isinstance(rule, dict) else ""


def _share(row: pd.Series) -> str:
    return f"{row['share']:.2f} [{row['lo']:.2f}, {row['hi']:.2f}]"


def format_table(table: pd.DataFrame) -> str:
    width = max(12, int(table["parameters"].str.len().max()))
    head = f"{'':4}{'kind':6}{'parameters':{width}}  share  {INTERVAL:.0%} interval  first"
    rows = [head]
    for kind, group in table.groupby("kind", sort=False):
        for rank, r in enumerate(group.itertuples(), start=1):
            rows.append(
                f"{rank:>3} {kind:6}{r.parameters:{width}}  {r.share:5.3f}  "
                f"[{r.lo:.3f}, {r.hi:.3f}]  {r.first:5.0%}"
            )
    return "\n".join(rows)


def markdown(table: pd.DataFrame, lines: list[str], verdict: str) -> str:
    out = [f"# {verdict}", "", *(f"- {line}" for line in lines), ""]
    out += [
        f"| rank | kind | parameters | share (median) | {INTERVAL:.0%} interval | first |",
        "|---:|---|---|---:|---|---:|",
    ]
    for kind, group in table.groupby("kind", sort=False):
        for rank, r in enumerate(group.itertuples(), start=1):
            out.append(
                f"| {rank} | {kind} | {r.parameters} | {r.share:.3f} | "
                f"[{r.lo:.3f}, {r.hi:.3f}] | {r.first:.0%} |"
            )
    return "\n".join(out) + "\n"


def reproduce(args: argparse.Namespace) -> str:
    cmd = ["python", "-m", "analysis", "importance"]
    for flag in ("store", "sweep", "yaml", "wandb", "metric", "budget", "emit_grid", "out"):
        value = getattr(args, flag, None)
        if value is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(value)]
    cmd += ["--bootstrap", str(args.bootstrap), "--seed", str(args.seed)]
    return shlex.join(cmd)

"""bench/peers.py's arithmetic: one arm's measurement, the results check, and the markdown."""

from __future__ import annotations

import math
import statistics
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweepmap import keys

INF = math.inf
TARGET_RATIO = 1.3  # issue 15: sweepmap at least 1.3x Optuna's runs/min on the default grid


@dataclass(frozen=True)
class Timing:
    wall_s: float  # the clock around the processes
    t0: float  # time.time() at their start
    end: float  # time.time() at the last one's exit
    cpu_s: float  # CPU-seconds of these processes and the children they waited for
    other_cores: float  # CPU of every other process on the machine, per second of wall


@dataclass(frozen=True)
class Arm:
    name: str
    agents: int
    timing: Timing
    results: dict[str, dict[str, Any]]  # point key -> val/accuracy, val/loss, failure
    trials: int  # runs or trials started: above the points when one ran twice
    spans: list[tuple[float, float]]  # each run's (start, end), as its runner records them
    train_s: float  # sum of the runs' train_time (sweepmap.loop.fit's loop alone)

    @property
    def wall_s(self) -> float:
        return self.timing.wall_s

    @property
    def runs_per_min(self) -> float:
        """Distinct grid points a minute: a point trained twice counts once."""
        return 60.0 * len(self.results) / self.wall_s

    @property
    def start_s(self) -> float:
        """From the processes' start to the first run's."""
        return min(s for s, _ in self.spans) - self.timing.t0 if self.spans else 0.0

    @property
    def exit_s(self) -> float:
        """From the last run's end to the last process's exit."""
        return self.timing.end - max(e for _, e in self.spans) if self.spans else 0.0

    @property
    def tail_s(self) -> float:
        """From the agents-th last end of a run to the last: about how long, at the end of the
        grid, fewer runs went on than there are agents (an agent had nothing left)."""
        ends = sorted(e for _, e in self.spans)
        return ends[-1] - ends[-self.agents] if len(ends) >= self.agents else 0.0

    @property
    def in_runs_s(self) -> float:
        """Agent-seconds inside runs but outside their training loops (set-up, logging)."""
        return sum(e - s for s, e in self.spans) - self.train_s

    @property
    def outside_s(self) -> float:
        """Agent-seconds outside any run: start-up, between runs, the tail, the exit."""
        return self.agents * self.wall_s - sum(e - s for s, e in self.spans)


def _gap(x: Any, y: Any, relative: bool = False) -> float:
    if x is None or y is None:
        return 0.0 if x is y else INF
    gap = abs(float(x) - float(y))
    return gap / max(abs(float(x)), abs(float(y)), 1e-12) if relative else gap


def _differences(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    """(|Δ val/accuracy|, relative |Δ val/loss|) of one point; inf where one is missing."""
    if a.get(keys.FAILURE) != b.get(keys.FAILURE):
        return INF, INF
    return (
        _gap(a.get(keys.VAL_ACCURACY), b.get(keys.VAL_ACCURACY)),
        _gap(a.get(keys.VAL_LOSS), b.get(keys.VAL_LOSS), relative=True),
    )


def largest_differences(arms: Sequence[Arm]) -> tuple[float, float, int]:
    """Against the first arm: the largest differences over every other arm's points, and how
    many (arm, point) pairs were compared."""
    worst_acc = worst_loss = 0.0
    compared = 0
    for arm in arms[1:]:
        for point, outcome in arm.results.items():
            if point in arms[0].results:
                d_acc, d_loss = _differences(arms[0].results[point], outcome)
                worst_acc, worst_loss = max(worst_acc, d_acc), max(worst_loss, d_loss)
                compared += 1
    return worst_acc, worst_loss, compared


def disagreements(arms: Sequence[Arm], grid: int, loss_tolerance: float) -> list[str]:
    """What does not match, each in a line: every arm runs every grid point, and each point's
    final val/accuracy equals the first arm's exactly, its val/loss within the tolerance."""
    wrong = [
        f"{a.name}: {len(a.results)} of {grid} grid points ran"
        for a in arms
        if len(a.results) != grid
    ]
    if not arms:
        return wrong
    ref = arms[0]
    for arm in arms[1:]:
        for point in sorted(ref.results.keys() | arm.results.keys()):
            one, other = ref.results.get(point), arm.results.get(point)
            if one is None or other is None:
                wrong.append(f"{point}: only in {ref.name if other is None else arm.name}")
                continue
            d_acc, d_loss = _differences(one, other)
            if d_acc > 0 or d_loss > loss_tolerance:
                wrong.append(f"{point}: {ref.name} {one}, {arm.name} {other}")
    return wrong


def git_commit(root: Path) -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return out.stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return f"{sha} + uncommitted changes in {len(changed)} tracked files" if changed else sha


def _spread(values: Sequence[float], fmt: str = ".1f") -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


# The summary table's columns after the arm: (value of one arm's round, format).
SUMMARY_COLUMNS: tuple[tuple[Callable[[Arm], float], str], ...] = (
    (lambda a: a.runs_per_min, ".1f"),
    (lambda a: a.wall_s, ".1f"),
    (lambda a: a.timing.cpu_s, ".0f"),
    (lambda a: a.train_s, ".1f"),
    (lambda a: a.in_runs_s, ".1f"),
    (lambda a: a.outside_s, ".1f"),
    (lambda a: a.start_s, ".1f"),
    (lambda a: a.tail_s, ".1f"),
    (lambda a: a.exit_s, ".1f"),
)


def markdown(
    sweep: Path,
    command: str,
    facts: dict[str, str],
    commit: str,
    grid: int,
    rounds: Sequence[dict[str, Arm]],
    wrong: Sequence[str],
) -> list[str]:
    ratios = [r["sweepmap"].runs_per_min / r["optuna"].runs_per_min for r in rounds]
    agents = rounds[0]["sweepmap"].agents
    lines = [
        "## sweepmap against Optuna (`make bench-peers`)",
        "",
        f"Sweep `{sweep.as_posix()}`, {grid} grid points, {agents} sweepmap agents against "
        f"{agents} Optuna worker processes, {len(rounds)} measured round(s) taken in turn after "
        f"a warm-up, measured with `{command}` at commit {commit}.",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        "",
        "| round | sweepmap wall (s) | runs/min | CPU (s) | other work (cores) "
        "| Optuna wall (s) | runs/min | CPU (s) | other work (cores) | sweepmap ÷ Optuna |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for i, (r, ratio) in enumerate(zip(rounds, ratios, strict=True), 1):
        cells = [
            f"{a.wall_s:.1f} | {a.runs_per_min:.1f} | {a.timing.cpu_s:.0f} | "
            f"{a.timing.other_cores:.2f}"
            for a in (r["sweepmap"], r["optuna"])
        ]
        lines.append(f"| {i} | {' | '.join(cells)} | {ratio:.2f} |")
    lines += [
        "",
        "Medians (ranges) over the rounds; agent-s are agent-seconds (agents × wall in all):",
        "",
        "| arm | runs/min | wall (s) | CPU (s) | Σ train_time (agent-s) | in runs, not "
        "training (agent-s) | outside runs (agent-s) | to first run (s) | tail (s) | exit (s) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, label in (("sweepmap", "sweepmap, wandb offline"), ("optuna", "Optuna, no wandb")):
        arms = [r[name] for r in rounds]
        cells = [_spread([get(a) for a in arms], fmt) for get, fmt in SUMMARY_COLUMNS]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    ratio = statistics.median(ratios)
    all_arms = [a for r in rounds for a in r.values()]
    d_acc, d_loss, compared = largest_differences(all_arms)
    twice = [f"{a.name} {a.trials - len(a.results)}" for a in all_arms if a.trials > len(a.results)]
    lines += [
        "",
        f"- sweepmap ÷ Optuna runs/min, paired by round: **{ratio:.2f}x** "
        f"({min(ratios):.2f} to {max(ratios):.2f}); target at least {TARGET_RATIO}x: "
        f"{'met' if ratio >= TARGET_RATIO else 'not met'}.",
        "- Results: "
        + (
            f"the same in both arms and every round: largest |Δ final val/accuracy| {d_acc:.1e}, "
            f"relative |Δ final val/loss| {d_loss:.1e} ({compared} points compared with the "
            "first round's sweepmap run)."
            if not wrong
            else f"**they disagree** at {len(wrong)} point(s): {'; '.join(wrong[:3])}"
        ),
        "- Points trained twice (Optuna workers racing for the grid's last entries): "
        + (", ".join(twice) if twice else "none")
        + ".",
        "- sweepmap: `python -m localsweep run SWEEP --agents N --store TMP`, WANDB_MODE=offline "
        "(as its users run it; GUIDE §8: disabled gives the same figure). Optuna: N processes "
        "of `python -m bench.optuna_trial` (`GridSampler(seed=0)` over the sweep's axes, one "
        "`JournalStorage(JournalFileBackend)` file, `MaxTrialsCallback(grid)`), each trial "
        "`train.prepare` then `train.train` with no wandb at all, as Optuna's users run it. "
        "One torch thread a process (SWEEPMAP_THREADS=1) in both.",
        "- wall: from starting the arm's processes to the last one's exit. CPU: CPU-seconds of "
        "the arm's processes and of the children they waited for (the noise of other work "
        "moves it less than wall time). other work: CPU-seconds of every other process on "
        "the machine (/proc/stat) per second of wall; above 0.05 or so, the arm shared the "
        "cores. Σ train_time: the "
        "runs' training loops (`sweepmap.loop.fit`); in runs, not training: each run's span as "
        "its runner records it (sweepmap's store started→ended, Optuna's trial "
        "datetime_start→datetime_complete) less its loop: config, model, wandb init and finish "
        "or the storage; outside runs: agents × wall less the spans: imports, start-up, "
        "between runs, the tail and the exit. tail: from the agents-th last run's end to the "
        "last's, about how long an agent had nothing left to run.",
    ]
    return lines

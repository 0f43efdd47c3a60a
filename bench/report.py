"""bench/results.md: the table, the verdict on the targets, and the scaling section."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.sweep_throughput import Measurement

SCALING_AGENTS = (1, 2)
# The local runner's targets on a 2-core CPU: runs/min over one process per run, and the
# most of its agent-seconds that may go outside training loops.
TARGET_SPEEDUP, TARGET_SHARE = 3.0, 0.15
SCALING_BEGIN, SCALING_END = "<!-- scaling:begin -->", "<!-- scaling:end -->"


def publish(lines: Sequence[str], out: Path | None) -> None:
    """Print a report and, with `out`, (re)write it there as markdown."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)


def append(lines: Sequence[str], out: Path | None) -> None:
    """Print a section and, with `out`, add it at the end of that markdown file."""
    text = "\n".join(lines)
    print(text)
    if out is not None:
        with out.open("a") as f:
            f.write(text + "\n")


def max_difference(measurements: Sequence[Measurement]) -> tuple[float, int]:
    """Largest |difference| in final val/accuracy of one grid point across measurements."""
    worst, compared = 0.0, 0
    points = {p for m in measurements for p in m.accuracy}
    for p in points:
        values = [m.accuracy[p] for m in measurements if p in m.accuracy]
        if len(values) > 1:
            compared += 1
            worst = max(worst, max(values) - min(values))
    return worst, compared


def table(rows: Sequence[tuple[str, Measurement]]) -> list[str]:
    lines = [
        "| runner | mode | agents | runs | wall (s) | runs/min | Σ train_time (s) "
        "| overhead share | overhead per run (s) | other work (cores) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for label, m in rows:
        runs = f"{m.runs}" if m.runs == m.grid else f"{m.runs} of {m.grid}"
        lines.append(
            f"| {label} | {m.mode} | {m.agents} | {runs} | {m.wall_s:.1f} | "
            f"{m.runs_per_min:.1f} | {m.train_s:.1f} | {m.overhead:.1%} | "
            f"{m.overhead_per_run_s:.2f} | {m.other_cores:.2f} |"
        )
    return lines


def report(
    sweep: Path,
    command: str,
    facts: dict[str, str],
    results: dict[tuple[str, int], Measurement],
    baseline_runs: int | None,
    floor: dict[str, float] | None = None,
    repeated: dict[tuple[str, int], list[Measurement]] | None = None,
) -> list[str]:
    local = max(
        (m for (mode, _), m in results.items() if mode == "inprocess"),
        key=lambda m: m.runs_per_min,
    )
    base = results[("process", 1)]
    rows = [
        (("**local runner**" if m is local else "local runner"), m)
        for (mode, _), m in results.items()
        if mode == "inprocess"
    ] + [("one process per run", m) for (mode, _), m in results.items() if mode == "process"]
    diff, compared = max_difference(list(results.values()))

    def speedup(m: Measurement) -> float:
        return m.runs_per_min / base.runs_per_min

    lines = [
        "# Sweep throughput",
        "",
        f"Sweep `{sweep.as_posix()}` ({local.grid} grid points, its own epochs), measured "
        f"with `{command}`.",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        "",
        *table(rows),
        "",
        f"- Speed-up of the local runner (inprocess, {local.agents} agent(s)) over one process "
        f"per run with 1 agent, as one `wandb agent` runs a sweep: "
        f"**{speedup(local):.1f}x** runs/min.",
    ]
    if ("process", local.agents) in results and local.agents != 1:
        like = results[("process", local.agents)]
        lines.append(
            f"- Like for like, {local.agents} agents each: "
            f"{local.runs_per_min / like.runs_per_min:.1f}x."
        )
    shares = [m for (mode, _), m in results.items() if mode == "inprocess"]
    floor_s = sum(floor.values()) if floor else 0.0

    def floor_share(m: Measurement) -> float:
        """The share that the start-up floor alone sets: each agent pays it once."""
        return floor_s / (floor_s + m.train_s / m.agents)

    def speedup_verdict(m: Measurement) -> str:
        return "met" if speedup(m) >= TARGET_SPEEDUP else "not met"

    def verdict(m: Measurement) -> str:
        if m.overhead <= TARGET_SHARE:
            return "met"
        if floor_s and floor_share(m) > TARGET_SHARE:
            return f"not met, nor can it be here: the start-up floor alone is {floor_share(m):.1%}"
        return "not met"

    lines += [
        f"- Runs/min against one process per run with 1 agent, target at least "
        f"{TARGET_SPEEDUP:.0f}x: "
        + "; ".join(f"{m.agents} agent(s) {speedup(m):.1f}x, {speedup_verdict(m)}" for m in shares)
        + ".",
        f"- Overhead share, target at most {TARGET_SHARE:.0%}: "
        + "; ".join(f"{m.agents} agent(s) {m.overhead:.1%}, {verdict(m)}" for m in shares)
        + " (each agent's start-up is a fixed cost: see the scaling section).",
    ]
    many = {key: ms for key, ms in (repeated or {}).items() if len(ms) > 1}
    if many:
        ranges = "; ".join(
            f"{agents} agent(s) {min(m.overhead for m in ms):.1%} to "
            f"{max(m.overhead for m in ms):.1%}"
            for (_, agents), ms in many.items()
        )
        counts = sorted({len(ms) for ms in many.values()})
        lines.append(
            f"- The in-process rows are each the median by overhead share of "
            f"{' or '.join(map(str, counts))} measurements, taken in turn; their overhead "
            f"shares ranged over {ranges}."
        )
    if floor:
        parts = ", ".join(f"{step} {s:.2f} s" for step, s in floor.items())
        bounds = "; ".join(f"{m.agents} agent(s) {floor_share(m):.1%}" for m in shares)
        lines.append(
            f"- Start-up floor: before its first run an in-process agent imports wandb, torch, "
            f"torchmetrics and torch._dynamo and starts wandb's service beside them, "
            f"{floor_s:.1f} s alone on this machine ({parts}; `bench/facts.py`, medians of 3). "
            f"On this grid that alone is a share of at least {bounds}, whatever else the "
            "runner does; the rest of each row's overhead is the data, each run's "
            "`wandb.init`/`finish` and model set-up, and the agents' exit. Most of "
            "torchmetrics' import is scipy.signal and matplotlib, which it loads whenever they "
            "are installed (Lightning-AI/torchmetrics#3457, open)."
        )
    lines += [
        "- wall: the clock around the whole command, from Python start-up to the last agent's "
        "exit (imports, data loading, wandb service, store and grid included).",
        "- overhead share: (agents × wall − Σ train_time) / (agents × wall), i.e. in "
        "agent-seconds, where train_time is each run's training loop (`sweepmap.loop.fit`) "
        "as stored in its summary; torch's one-off import of `torch._dynamo` (which "
        "torch.optim makes at a process's first optimizer step) happens before that clock "
        "starts, so it counts as overhead: once per agent in-process, in every run with one "
        "process per run.",
        f"- Same results both ways: largest difference in final val/accuracy for one grid "
        f"point across all rows: {diff:.1e} ({compared} points compared).",
        "- other work: CPU-seconds the machine spent on processes outside the benchmark "
        "(from /proc/stat) per second of wall; above 0.05 or so, that row shared the cores.",
    ]
    if baseline_runs is not None:
        lines.append(
            f"- The process-per-run rows ran only the first {baseline_runs} grid points "
            "(`--baseline-runs`); their runs/min is over those runs."
        )
    lines += [
        "",
        "Agents per GPU and bf16: `make bench-gpu` (`bench/packing.py`) on a machine with one; "
        "its figures go to `bench/packing.md`.",
    ]
    return lines


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y against x."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - slope * mx, slope


def scaling_section(
    sweep: Path, command: str, results: dict[tuple[int, int], Measurement]
) -> list[str]:
    sizes = sorted({size for size, _ in results})
    lines = [
        SCALING_BEGIN,
        "## Scaling with the grid's size",
        "",
        f"In-process agents on grids cut from `{sweep.as_posix()}` (one `values` list halved "
        f"at a time), measured with `{command}`. Each cell: wall time (overhead share).",
        "",
        "| grid points | " + " | ".join(f"{a} agent(s)" for a in SCALING_AGENTS) + " |",
        "|--:|" + "--:|" * len(SCALING_AGENTS),
    ]
    for size in sizes:
        cells = [f"{results[size, a].wall_s:.1f} s ({results[size, a].overhead:.0%})"
                 for a in SCALING_AGENTS]  # fmt: skip
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    lines.append("")
    for a in SCALING_AGENTS:
        rows = [results[size, a] for size in sizes]
        fixed, per_run = fit_line([(m.runs, m.wall_s) for m in rows])
        # Overhead in agent-seconds against runs: a fixed part (start-up, the end) and a part
        # per run; with t s of training a run, the share is 15% from n = .85F / (.15t - .85c).
        f, c = fit_line([(m.runs, a * m.wall_s - m.train_s) for m in rows])
        t = sum(m.train_s for m in rows) / sum(m.runs for m in rows)
        at_15 = 0.85 * f / (0.15 * t - 0.85 * c) if 0.15 * t > 0.85 * c else float("inf")
        lines.append(
            f"- {a} agent(s): wall ≈ {fixed:.1f} s + {per_run:.2f} s per run; overhead ≈ "
            f"{f:.1f} agent-s fixed (start-up and exit) + {c:.3f} agent-s per run, against "
            f"{t:.2f} s of training a run (least squares): the share is 15% from about "
            f"{at_15:.0f} runs and tends to {c / (c + t):.0%} on large grids."
        )
    return [*lines, SCALING_END]


def old_scaling(out: Path) -> list[str]:
    """The scaling section of an earlier results file, kept when this run skips it."""
    if not out.exists():
        return []
    text = out.read_text()
    if SCALING_BEGIN not in text or SCALING_END not in text:
        return []
    body = text.split(SCALING_BEGIN, 1)[1].split(SCALING_END, 1)[0]
    return [SCALING_BEGIN, *body.strip("\n").splitlines(), SCALING_END]

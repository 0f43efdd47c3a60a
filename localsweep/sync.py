"""python -m localsweep sync NAME --project P [--entity E] [--attach] [--publish]

A local sweep's runs into the team's wandb project, with wandb's own `wandb sync`.

Which runs: those that ended on their own (finished, stopped early by a scan's rule, or failed
on their own merits). wandb wrote their exit, so the server shows each with its state. Crashed,
errored and unfinished runs are left out and counted: they have no exit record (the server
would show them running), and `localsweep run` runs their points again; sync after that.

Into which project: the one the runs were written for, read from their records (WANDB_PROJECT
when they ran, else wandb's default: the git repository's name). `wandb sync --project P` moves
a run to P but logs its artifacts (the confusion chart's table, a saved model) where its records
say, so the team's project would show runs whose tables live in another. A --project other
than the one a run with artifacts was written for is refused, in one line, before any upload.

Idempotent: wandb-core marks an uploaded `run-ID.wandb` with `run-ID.wandb.synced` beside it,
but that marker does not say where to, so a run synced to one project would be skipped for
another. The store keeps its own note instead, `synced/NAME.json`: per ENTITY/PROJECT, the
runs uploaded there and the sweep they were attached to. Runs in the note are not uploaded
again; the others go with `--include-synced`, and a run counts as uploaded once wandb's
marker is back. To upload again (a project deleted on the server), delete the note.

--attach: a wandb sweep of the same YAML, with the finished (and stopped) runs as its prior
runs: `wandb.sweep(config, prior_runs=[...])`, what `wandb sweep --prior_run ID` sends. Failed
runs are not attached: the server's grid counts every run of a sweep as seen, so their points
stay holes for `python -m agents E/P/SWEEP` to run. The same runs again reuse that sweep; more
runs make a new one (the server moves them: a run belongs to one sweep).

--publish: `python -m analysis publish` of the local sweep into P; its run joins the group
of the synced runs (the local sweep's name).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.wandb_private import offline_run_records
from localsweep.store import Store
from sweepmap.outcome import EXIT_ENVIRONMENT, EXIT_OK, EXIT_USAGE
from sweepmap.wandb_exit import wandb_error

# Runs whose wandb files hold their exit: the server shows them as they ended.
ENDED = ("finished", "stopped", "failed")
# Runs a sweep on the server may count as done: finished, or stopped by a scan's rule.
ATTACHED = ("finished", "stopped")
NO_FILES = "no wandb files"  # ended, but wandb wrote nothing (WANDB_MODE=disabled)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="the local sweep's name (`localsweep status` lists them)")
    p.add_argument("--project", default=None,
                   help="the team's wandb project (default: the one the runs were written for, "
                   "WANDB_PROJECT when they ran; another is refused when their tables are "
                   "elsewhere)")  # fmt: skip
    p.add_argument("--entity", default=None, help="wandb entity (default: your default one)")
    p.add_argument(
        "--attach",
        action="store_true",
        help="make a wandb sweep of the same YAML that holds the finished runs",
    )
    p.add_argument("--publish", action="store_true",
                   help="then publish the analysis into the project (python -m analysis "
                   "publish, default metric and axes)")  # fmt: skip


@dataclass(frozen=True)
class Upload:
    """One run's offline wandb files: the `.wandb` logs `wandb sync` replays."""

    run_id: str
    state: str
    logs: tuple[Path, ...]
    project: str | None = None  # the one its records were written for; None: unreadable
    tables: frozenset[str] = frozenset()  # the projects its artifacts were logged to
    lost: int = 0  # files of its artifacts gone from where wandb staged them

    @property
    def synced(self) -> bool:
        return all(log.with_suffix(".wandb.synced").is_file() for log in self.logs)


def plan(store: Store, name: str) -> tuple[list[Upload], Counter[str]]:
    """(the runs that can go, with their files; the counts of those that cannot, by why)."""
    ready: list[Upload] = []
    left: Counter[str] = Counter()
    for run in store.runs(name):
        if run.state not in ENDED:
            left[run.state] += 1
            continue
        # The folder an offline run writes (agents/contract.py: the store is its WANDB_DIR).
        folders = sorted((store.root / "wandb").glob(f"offline-run-*-{run.id}"))
        logs = tuple(log for folder in folders for log in sorted(folder.glob("*.wandb")))
        if logs:
            ready.append(read_upload(run.id, run.state, logs))
        else:
            left[NO_FILES] += 1
    return ready, left


def read_upload(run_id: str, state: str, logs: tuple[Path, ...]) -> Upload:
    """A run's upload, with what its records say: the project they were written for, the
    projects of its artifacts, and how many of their staged files are gone."""
    records = [offline_run_records(log.parent) for log in logs]
    if any(r is None for r in records):
        return Upload(run_id, state, logs)
    read = [r for rs in records if rs is not None for r in rs]
    runs = {str(r["run"].get("project", "")) for r in read if r.get("type") == "run"}
    made = [r["artifact"] for r in read if r.get("type") == "artifact"]
    # An offline run's artifact files wait in wandb's staging folder (WANDB_DATA_DIR) until
    # `wandb sync` uploads them; one gone there goes up as an empty artifact, and sync says nothing.
    staged = [e.get("local_path") for a in made for e in a.get("manifest", {}).get("contents", [])]
    lost = sum(1 for path in staged if path and not Path(path).is_file())
    project = runs.pop() if len(runs) == 1 else None
    tables = frozenset(str(a.get("project")) for a in made)
    return Upload(run_id, state, logs, project, tables, lost)


def choose_project(name: str, wanted: str | None, ready: list[Upload]) -> tuple[str, str]:
    """(the project to sync into, "") or ("", why not, one line)."""
    if wanted is None:
        written = Counter(up.project or "?" for up in ready)
        if len(written) == 1 and "?" not in written:
            return next(iter(written)), ""
        if not written:
            return "", f"{name}: no run has wandb files to read a project; name one with --project"
        if "?" in written:
            n = written["?"]
            return "", (f"{name}: cannot read the project {n} of its runs {_were(n)} written for; "
                        "name one with --project")  # fmt: skip
        listed = ", ".join(f"'{p}' ({n} run{'s' * (n != 1)})" for p, n in sorted(written.items()))
        return "", f"{name}: its runs were written for projects {listed}; name one with --project"
    moved = [up for up in ready if up.tables - {wanted}]
    if not moved:
        return wanted, ""
    held = sorted({p for up in moved for p in up.tables} - {wanted})
    n = len(moved)
    return "", (f"{name}: --project {wanted}: {n} of its runs {_were(n)} written for project "
                f"{', '.join(map(repr, held))} and their tables would stay there (wandb sync moves "
                f"a run, not its artifacts); sync with --project {held[0]}, or run the study with "
                f"WANDB_PROJECT={wanted}")  # fmt: skip


def _were(n: int) -> str:
    return "was" if n == 1 else "were"


def note_path(store: Store, name: str) -> Path:
    return store.root / "synced" / f"{name}.json"


def read_note(store: Store, name: str) -> dict[str, Any]:
    path = note_path(store, name)
    try:
        note: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:  # a damaged note: said, then rebuilt from here on
        print(f"localsweep: sync: {path}: unreadable ({err}); starting a new one", file=sys.stderr)
        return {}
    return note


def write_note(store: Store, name: str, note: dict[str, Any]) -> None:
    path = note_path(store, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(note, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)  # whole or not at all: the note decides what is uploaded again


def wandb_sync(uploads: list[Upload], entity: str, project: str) -> tuple[list[Upload], str]:
    """Upload with the real `wandb sync`; (the runs uploaded, its last line when some were not)."""
    for up in uploads:  # a marker from an earlier sync elsewhere must not count as this one
        for log in up.logs:
            log.with_suffix(".wandb.synced").unlink(missing_ok=True)
    logs = [str(log) for up in uploads for log in up.logs]
    cmd = [sys.executable, "-m", "wandb", "sync", "--entity", entity, "--project", project,
           "--include-synced", *logs]  # fmt: skip
    # Its own logs (debug-sync.*.log) go beside the runs' folders, not into ./wandb.
    env = os.environ | {"WANDB_DIR": str(uploads[0].logs[0].parents[2])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    uploaded = [up for up in uploads if up.synced]
    lines = [x for x in (done.stdout + done.stderr).splitlines() if x.strip()]
    why = "" if len(uploaded) == len(uploads) else (lines or [f"exit {done.returncode}"])[-1]
    return uploaded, why


def connect(entity: str | None) -> tuple[Any, str]:
    """(wandb.Api(), the entity): one Viewer request that shows the key and the server work,
    before anything is uploaded."""
    import wandb

    api = wandb.Api()
    viewer = api.viewer
    return api, entity or str(viewer.entity)


def attach(api: Any, store: Store, name: str, entity: str, project: str,
           runs: list[str], note: dict[str, Any]) -> str:  # fmt: skip
    """The wandb sweep holding `runs` (made now, or the one made for them before); its id."""
    earlier = note.get("sweep") or {}
    if earlier and sorted(earlier.get("runs", [])) == sorted(runs):
        return str(earlier["id"])
    import wandb

    config = dict(store.sweep(name).config)
    config.setdefault("name", name)  # the team sees which local sweep it holds
    with contextlib.redirect_stdout(io.StringIO()):  # wandb.sweep prints its id and URL itself
        sweep_id = wandb.sweep(config, entity=entity, project=project, prior_runs=runs)
    note["sweep"] = {"id": sweep_id, "runs": sorted(runs)}
    return str(sweep_id)


def publish(store: Store, name: str, entity: str, project: str) -> int:
    """`python -m analysis publish` of the local sweep; it prints its own URL."""
    # The analysis is a floor above localsweep: run as its own command, not imported.
    cmd = [sys.executable, "-m", "analysis", "publish", "--store", str(store.root),
           "--sweep", name, "--project", project, "--entity", entity]  # fmt: skip
    # localsweep defaults WANDB_MODE to offline for its runs; a publish is for the server.
    return subprocess.run(cmd, env=os.environ | {"WANDB_MODE": "online"}).returncode


def cmd_sync(args: argparse.Namespace) -> int:
    store = Store(args.store, create=False)
    name = args.sweep
    store.sweep(name)  # a clear KeyError (one line, exit 2) for an unknown name
    ready, left = plan(store, name)
    project, why_not = choose_project(name, args.project, ready)
    if why_not:  # before the server is asked anything or a file goes up
        print(f"localsweep: sync: {why_not}", file=sys.stderr)
        return EXIT_USAGE
    try:
        api, entity = connect(args.entity)
    except Exception as err:  # no key, no server: one line, nothing uploaded
        print(f"localsweep: sync: wandb: {wandb_error(err)}", file=sys.stderr)
        return EXIT_USAGE
    where = f"{entity}/{project}"
    notes = read_note(store, name)
    note = notes.setdefault(where, {})
    before = set(note.get("runs", []))
    todo = [up for up in ready if up.run_id not in before]
    lost = [up for up in todo if up.lost]
    if lost:
        files = sum(up.lost for up in lost)
        print(f"localsweep: sync: {name}: {len(lost)} of the runs to upload lost the staged files "
              f"of their tables ({files} file{'s' * (files != 1)}, gone from WANDB_DATA_DIR "
              "since they ran): they go up without them", file=sys.stderr)  # fmt: skip
    if todo:  # wandb sync is quiet until it is done: say what it is doing meanwhile
        print(f"uploading {len(todo)} runs with wandb sync ...", file=sys.stderr, flush=True)
    uploaded, why = wandb_sync(todo, entity, project) if todo else ([], "")
    note["runs"] = sorted(before | {up.run_id for up in uploaded})
    write_note(store, name, notes)

    line = (
        f"{name} -> {where}: {len(ready) - len(todo)} runs already synced, {len(uploaded)} uploaded"
    )
    failed = len(todo) - len(uploaded)
    if failed:
        line += f", {failed} not uploaded ({why})"
    if lost:
        line += f" ({len(lost)} without their tables: their staged files were gone)"
    states = {s: n for s, n in left.items() if s != NO_FILES}
    if states:
        out = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        line += (f"; left out: {out} (no exit record: sync again once `localsweep run` has run"
                 " their points)")  # fmt: skip
    if left[NO_FILES]:
        line += f"; {left[NO_FILES]} ended without wandb files (run with WANDB_MODE=disabled)"
    print(line, flush=True)
    listed = api.runs(where, filters={"group": name}, per_page=200)
    on_server = {r.id: r for r in listed}
    if on_server:
        url = next(iter(on_server.values())).url.rsplit("/runs/", 1)[0]
        print(f"runs: {url} (group {name}: {len(on_server)} runs)", flush=True)
    if failed:
        return EXIT_ENVIRONMENT

    if args.attach:
        done = [up.run_id for up in ready if up.state in ATTACHED and up.run_id in on_server]
        sweep_id = attach(api, store, name, entity, project, done, note)
        write_note(store, name, notes)
        url = api.sweep(f"{where}/{sweep_id}").url
        points = {json.dumps(store.run(r).config, sort_keys=True) for r in done}
        holes = store.total(name) - len(points)
        print(f"sweep: {url} ({len(done)} runs attached)", flush=True)
        if holes > 0 and store.sweep(name).config.get("method") == "grid":
            print(f"  {holes} grid point(s) without a finished run there; run them with: "
                  f"python -m agents {where}/{sweep_id}", flush=True)  # fmt: skip
    if args.publish:
        return publish(store, name, entity, project)
    return EXIT_OK

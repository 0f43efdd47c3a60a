"""Runs in the loopback fake (tests/fakewandb.py), as wandb 0.31.0 writes and reads them.

Write path: UpsertBucket (wandb.init, `wandb sync`, then again with the full config and
metadata), POST .../file_stream (history, summary, the exit), CreateRunFiles (an upload URL per
file), PUT /upload/<run>/<file>. Read path: Runs (the public API's listing), Run and
RunFullHistory (one run), RunResumeStatus (wandb.init(resume=...)), RunFiles (`run.files()`,
`run.file(name)`: a download URL per file) and GET /download/<run>/<file> (`File.download()`,
which wandb-core fetches).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakewandb import FakeWandb

NOW = "2024-01-01T00:00:00"


@dataclass
class FakeSweep:
    name: str
    project: str
    config: dict[str, Any]
    yaml: str


@dataclass
class FakeRun:
    name: str
    project: str
    sweep: str | None
    state: str = "pending"  # pending -> running -> finished | failed
    config: dict[str, Any] = field(default_factory=dict)  # wandb's form: {key: {"value": v}}
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    exitcode: int | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    group: str | None = None
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)
    handed_out_at: float | None = None  # time.monotonic() of the heartbeat that gave it out
    started_at: float | None = None  # ...of its first UpsertBucket (wandb.init)

    @property
    def params(self) -> dict[str, Any]:
        """The user config as plain values, without wandb's own `_wandb` key."""
        return {k: v["value"] for k, v in self.config.items() if not k.startswith("_")}


def project_node(fake: FakeWandb, name: str) -> dict[str, Any]:
    return {"id": "1", "name": name, "entity": {"id": "1", "name": fake.entity}}


def run_node(fake: FakeWandb, r: FakeRun) -> dict[str, Any]:
    return {
        "id": r.name, "name": r.name, "displayName": r.name, "projectId": "1",
        "sweepName": r.sweep, "state": r.state, "config": json.dumps(r.config),
        "summaryMetrics": json.dumps(r.summary), "systemMetrics": "{}",
        "historyLineCount": len(r.history), "historyKeys": {}, "tags": r.tags, "group": r.group,
        "jobType": r.job_type, "commit": None, "readOnly": False, "createdAt": NOW,
        "heartbeatAt": NOW, "description": None, "notes": None, "exitcode": r.exitcode,
        "user": {"name": fake.entity, "username": fake.entity},
        "project": project_node(fake, r.project), "shouldStop": False, "stopped": False,
        "failed": r.state == "failed", "running": r.state == "running",
        "sampledHistory": [r.history],
        "history": [json.dumps(row) for row in r.history],
    }  # fmt: skip


def resume_node(r: FakeRun) -> dict[str, Any]:
    # The tails are JSON lists of JSON rows, as the old Python sender read them.
    tail = [json.dumps(row) for row in r.history[-1:]]
    return {
        "id": r.name, "name": r.name, "displayName": r.name,
        "summaryMetrics": json.dumps(r.summary), "config": json.dumps(r.config),
        "logLineCount": 0, "historyLineCount": len(r.history), "eventsLineCount": 0,
        "historyTail": json.dumps(tail), "eventsTail": "[]", "tags": r.tags, "notes": None,
        "wandbConfig": json.dumps({"t": r.config.get("_wandb", {}).get("value", {}).get("t")}),
    }  # fmt: skip


def run_graphql(fake: FakeWandb, op: str, v: dict[str, Any]) -> dict[str, Any] | None:
    """The `data` of a run operation, or None when `op` is not one."""
    if op == "UpsertBucket":  # wandb.init, then again with full config/metadata
        r = fake.runs.setdefault(v["name"], FakeRun(v["name"], v["project"], v.get("sweep")))
        r.config = json.loads(v["config"]) if v.get("config") else r.config
        r.group = v.get("groupName") or r.group
        r.job_type = v.get("jobType") or r.job_type
        r.tags = v.get("tags") or r.tags
        r.state = "running" if r.state == "pending" else r.state
        r.started_at = r.started_at or time.monotonic()
        return {"upsertBucket": {"bucket": run_node(fake, r), "inserted": True}}
    if op == "CreateRunFiles":
        up = f"{fake.url}/upload/{v['run']}"
        files = [{"name": f, "uploadUrl": f"{up}/{f}"} for f in v["files"]]
        return {"createRunFiles": {"runID": v["run"], "uploadHeaders": [], "files": files}}
    if op == "Runs":
        flt = json.loads(v.get("filters") or "{}")
        hits = [run_node(fake, r) for r in fake.runs.values()
                if r.project == v["project"] and match(r, flt)]  # fmt: skip
        start = int(v.get("cursor") or 0)
        page = hits[start : start + int(v.get("perPage") or 50)]
        edges = [{"node": n, "cursor": str(start + i + 1)} for i, n in enumerate(page)]
        end = start + len(page)
        info = {"endCursor": str(end), "hasNextPage": end < len(hits)}
        proj = {"internalId": "1", "runCount": len(hits), "readOnly": False}
        return {"project": proj | {"runs": {"edges": edges, "pageInfo": info}}}
    if op == "RunResumeStatus":  # wandb.init(id=..., resume="allow"|"must")
        found = fake.runs.get(v["name"])
        proj = project_node(fake, v["project"])
        return {"model": proj | {"bucket": resume_node(found) if found else None}}
    if op in ("Run", "RunFullHistory"):
        found = fake.runs.get(v["name"])
        return {"project": {"run": run_node(fake, found) if found else None}}
    if op == "RunFiles":  # run.files(names=[...]) and run.file(name)
        found = fake.runs.get(v["name"])
        node = _files_node(fake, found, v.get("fileNames") or []) if found else None
        return {"project": {"internalId": "1", "run": node}}
    return None


def _files_node(fake: FakeWandb, r: FakeRun, names: list[str]) -> dict[str, Any]:
    """All of a run's files in one page (the fake has few); `names` filters them."""
    wanted = [n for n in r.files if not names or n in names]
    edges = []
    for name in wanted:
        url = f"{fake.url}/download/{r.name}/{name}"
        edges.append({"cursor": name, "node": {
            "id": f"{r.name}/{name}", "name": name, "url": url, "directUrl": url,
            "sizeBytes": len(r.files[name]), "mimetype": None, "updatedAt": NOW, "md5": None,
        }})  # fmt: skip
    info = {"endCursor": wanted[-1] if wanted else None, "hasNextPage": False}
    return {"fileCount": len(wanted), "files": {"edges": edges, "pageInfo": info}}


def run_download(fake: FakeWandb, path: str) -> bytes | None:
    """GET /download/<run>/<file>: the bytes uploaded to that run, or None when not one."""
    parts = path.split("/", 3)  # "", "download", run, file
    if len(parts) == 4 and parts[1] == "download" and parts[2] in fake.runs:
        return fake.runs[parts[2]].files.get(parts[3])
    return None


def file_stream(r: FakeRun, req: dict[str, Any]) -> None:
    files = req.get("files", {})
    if "wandb-history.jsonl" in files:  # rows from `offset` on; a resend overwrites
        part = files["wandb-history.jsonl"]
        rows = [json.loads(line) for line in part["content"]]
        r.history[part["offset"] : part["offset"] + len(rows)] = rows
    for line in files.get("wandb-summary.json", {}).get("content", []):
        r.summary = json.loads(line)  # the whole summary, each time
    if req.get("complete"):
        r.exitcode = req.get("exitcode")
        r.state = "finished" if r.exitcode == 0 else "failed"


def match(r: FakeRun, flt: dict[str, Any]) -> bool:
    """The few MongoDB-style run filters the public API sends: $and, $or, key == value."""
    fields = {"sweep": r.sweep, "name": r.name, "state": r.state, "group": r.group}
    for k, want in flt.items():
        if k == "$and":
            ok = all(match(r, f) for f in want)
        elif k == "$or":
            ok = any(match(r, f) for f in want)
        elif k in fields:
            ok = fields[k] == want
        else:
            print(f"fakewandb: UNKNOWN run filter {k!r}", file=sys.stderr)
            ok = False
        if not ok:
            return False
    return True

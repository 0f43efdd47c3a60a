"""A loopback stand-in for the wandb backend, for contract tests. Tied to wandb==0.31.0.

The real `wandb` CLI, `wandb agent`, `wandb.init()` and `wandb.Api()` talk to it when pointed at
`FakeWandb.url` (see `FakeWandb.env()`): in 0.31 every request, GraphQL included, is made by the
Go sidecar `wandb-core`, so the operations below were read off the wire, not only from Python.

GraphQL (POST /graphql), answered by operation name:
  Viewer, GetViewer, UpsertSweep (with priorRunsFilters), SweepWithRuns, GetSweep, CreateAgent,
  Heartbeat, CreateCustomChart, OrganizationCoreWeaveOrganizationID, ServerFeaturesQuery;
  runs (UpsertBucket, RunResumeStatus, CreateRunFiles, Runs, Run, RunFullHistory, file_stream)
  in tests/fakewandb_runs.py; artifacts in tests/fakewandb_artifacts.py.
HTTP: POST /files/<entity>/<project>/<run>/file_stream (history rows from "wandb-history.jsonl",
summary from "wandb-summary.json", state from "complete"/"exitcode"), PUT /upload/... (file
uploads handed out by CreateRunFiles, accepted and kept), GET of those uploads and of artifact
files and manifests (downloads: a 404 when unknown), POST /sdk/otel/... (telemetry, ignored).
Anything else is printed to stderr as "fakewandb: UNKNOWN ..." and kept in `FakeWandb.unknown`;
unknown GraphQL gets `{"data": {}}`.

Behaviour worth knowing:
- Grid points come from wandb's own engine, `sweeps.next_run(config, runs)`. A heartbeat from
  an agent with no running run gets one `run` command (the run is recorded then, "pending");
  a heartbeat with running runs gets none; an exhausted sweep answers `exit`.
  `FakeWandb(race=True)` models wandb/wandb#597: a handed-out point counts only once its run's
  `wandb.init` arrives, so agents asking within that window get the same point.
- UpsertSweep's priorRunsFilters (`wandb sweep --prior_run`) moves those runs into the new
  sweep: what the server does with them is not in the client, so this is the fake's reading.
- Responses keep only the keys that the query text names (a word match, not a GraphQL parser),
  so a client that reads a field it never asked for fails here as it would on the real server;
  e.g. `Runs` asks for a lightweight fragment and `run.config` then costs a `Run` query.
- Run nodes carry `projectId: "1"`: the public API calls `int()` on it.
- Must-answer calls: an empty `Viewer` makes every CLI command fail ("invalid credentials"),
  and an empty `CreateRunFiles` makes wandb-core panic (nil pointer) in `run.finish()`.
- No auth, one entity, history kept by file_stream offset, `runs(order=...)` ignored.

Usage:
    with FakeWandb() as fake:
        env = {**os.environ, **fake.env("proj"), "HOME": ..., "WANDB_DIR": ...}
        ...  # run `wandb sweep` / `wandb agent` / wandb.Api() with env
        run = fake.sweep_runs(sweep_id)[0]  # FakeRun: params, config, summary, history,
        assert fake.unknown == []           # state, exitcode, files (uploaded bytes)
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

from tests.fakewandb_artifacts import (
    FakeArtifact,
    artifact_download,
    artifact_graphql,
    artifact_put,
)
from tests.fakewandb_runs import (
    NOW,
    FakeRun,
    FakeSweep,
    file_stream,
    match,
    project_node,
    run_download,
    run_graphql,
    run_node,
)

with warnings.catch_warnings():
    # sweeps 0.2.0 uses pydantic v1 config names; pydantic v2 warns once at import.
    warnings.filterwarnings("ignore", message=r"(?s).*(class-based `config`|config keys)")
    import sweeps

__all__ = ["FakeRun", "FakeSweep", "FakeWandb", "GraphQLError"]
OPAQUE = {"sampledHistory", "historyKeys"}  # JSON-typed fields: returned whole


class GraphQLError(Exception):
    """A refusal the real server makes too, answered as a GraphQL error (not 'unknown')."""


class FakeWandb:
    """`with FakeWandb() as fake:` serves on 127.0.0.1 (a free port) until the block ends."""

    def __init__(self, entity: str = "fake-entity", race: bool = False) -> None:
        self.entity = entity
        # race: a handed-out point counts as seen only once its run's wandb.init reaches the
        # server, so agents asking before that get the same point (wandb/wandb#597).
        self.race = race
        self.sweeps: dict[str, FakeSweep] = {}
        self.runs: dict[str, FakeRun] = {}  # by run id, in creation order
        self.agents: dict[str, str] = {}  # agent id -> sweep id
        self.artifacts: dict[str, FakeArtifact] = {}  # by id, in creation order (artifacts.py)
        self.charts: dict[str, dict[str, Any]] = {}  # custom chart presets by "entity/name"
        self.ops: list[str] = []  # every GraphQL operation name, in order
        self.calls: list[tuple[str, dict[str, Any]]] = []  # ...with its variables
        self.unknown: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeWandb:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeWandb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self, project: str = "fake-project") -> dict[str, str]:
        """The variables that point wandb at this fake (add an isolated HOME/WANDB_DIR)."""
        return {"WANDB_BASE_URL": self.url, "WANDB_API_KEY": "f" * 40, "WANDB_MODE": "online",
                "WANDB_ENTITY": self.entity, "WANDB_PROJECT": project}  # fmt: skip

    def sweep_runs(self, sweep_id: str) -> list[FakeRun]:
        return [r for r in self.runs.values() if r.sweep == sweep_id]

    # -- GraphQL -------------------------------------------------------------------------
    def _sweep_node(self, s: FakeSweep) -> dict[str, Any]:
        runs = [run_node(self, r) for r in self.sweep_runs(s.name)]
        return {
            "__typename": "Sweep", "id": s.name, "name": s.name, "displayName": None,
            "method": s.config.get("method"), "state": "RUNNING", "description": None,
            "config": s.yaml, "createdAt": NOW, "updatedAt": NOW, "heartbeatAt": NOW,
            "earlyStopJobRunning": False, "bestLoss": None, "controller": None, "scheduler": None,
            "runCount": len(runs), "runCountExpected": None,
            "runs": {"edges": [{"node": n} for n in runs]},
        }  # fmt: skip

    def _heartbeat(self, agent_id: str, run_state: dict[str, Any]) -> list[dict[str, Any]]:
        if run_state:  # the agent is busy: one run at a time per agent
            return []
        s = self.sweeps[self.agents[agent_id]]
        prior = [
            sweeps.SweepRun(name=r.name, state=r.state, summary_metrics=r.summary,
                            config={k: {"value": x} for k, x in r.params.items()})
            for r in self.sweep_runs(s.name) if not (self.race and r.started_at is None)
        ]  # fmt: skip
        nxt = sweeps.next_run(s.config, prior)
        if nxt is None:
            return [{"type": "exit"}]
        name = secrets.token_hex(4)
        self.runs[name] = FakeRun(name, s.project, s.name, config=dict(nxt.config))
        self.runs[name].handed_out_at = time.monotonic()
        return [{"type": "run", "run_id": name, "program": s.config.get("program"),
                 "args": nxt.config}]  # fmt: skip

    def graphql(self, op: str, v: dict[str, Any]) -> dict[str, Any] | None:
        """The `data` of the answer to operation `op`, or None when it is not served."""
        if op in ("Viewer", "GetViewer"):  # GetViewer: wandb.Api().viewer's UserFragment
            me: dict[str, Any] = {"id": "1", "entity": self.entity, "username": self.entity}
            me["flags"] = "{}"
            me |= {"name": self.entity, "admin": False, "deletedAt": None}
            return {"viewer": me | {"email": "fake@example.com", "teams": {"edges": []},
                                    "apiKeys": {"edges": []}}}  # fmt: skip
        if op == "UpsertSweep":
            sid = v.get("id") or secrets.token_hex(4)
            proj = v["projectName"]
            self.sweeps[sid] = FakeSweep(sid, proj, yaml.safe_load(v["config"]), v["config"])
            # `wandb sweep --prior_run ID` / wandb.sweep(prior_runs=[...]) send the runs as a
            # filter; the server adds them to the new sweep (a run belongs to one sweep).
            prior = json.loads(v.get("priorRunsFilters") or "null")
            for r in self.runs.values() if prior else ():
                if r.project == proj and match(r, prior):
                    r.sweep = sid
            sweep = {"name": sid, "project": project_node(self, proj)}
            return {"upsertSweep": {"sweep": sweep, "configValidationWarnings": []}}
        if op in ("SweepWithRuns", "GetSweep"):
            s = self.sweeps.get(v.get("sweep") or v.get("name") or "")
            return {"project": {"sweep": self._sweep_node(s) if s else None}}
        if op == "CreateAgent":
            aid = secrets.token_hex(4)
            self.agents[aid] = v["sweep"]
            return {"createAgent": {"agent": {"id": aid}}}
        if op == "Heartbeat":
            cmds = self._heartbeat(v["id"], json.loads(v.get("runState") or "{}"))
            return {"agentHeartbeat": {"agent": {"id": v["id"]}, "commands": json.dumps(cmds)}}
        if op == "OrganizationCoreWeaveOrganizationID":
            return {"entity": {"organization": None}}
        if op == "ServerFeaturesQuery":  # wandb-core asks during a run; none: an older server
            return {"serverInfo": {"features": []}}
        if op == "CreateCustomChart":  # Api().create_custom_chart; a name is taken once
            cid = f"{v['entity']}/{v['chartName']}"
            if cid in self.charts:
                raise GraphQLError(f"custom chart {cid} already exists")
            self.charts[cid] = v | {"spec": json.loads(v["spec"])}
            return {"createCustomChart": {"chart": {"id": cid}}}
        return run_graphql(self, op, v) or artifact_graphql(self, op, v)


def _select(obj: Any, query: str) -> Any:
    """Drop the keys that the query does not name, as a GraphQL server would."""
    if isinstance(obj, list):
        return [_select(x, query) for x in obj]
    if not isinstance(obj, dict):
        return obj
    return {k: v if k in OPAQUE else _select(v, query) for k, v in obj.items()
            if re.search(rf"\b{re.escape(k)}\b", query)}  # fmt: skip


def _handler(fake: FakeWandb) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body: Any) -> None:
            out = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def _unknown(self, what: str) -> None:
            print(f"fakewandb: UNKNOWN {what} (answered with empty data)", file=sys.stderr)
            fake.unknown.append(what)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?")[0]
            if path == "/graphql":
                req = json.loads(body)
                query = req.get("query", "")
                m = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
                op = req.get("operationName") or (m.group(1) if m else "?")
                with fake._lock:
                    fake.ops.append(op)
                    fake.calls.append((op, req.get("variables") or {}))
                    try:
                        data = fake.graphql(op, req.get("variables") or {})
                    except GraphQLError as err:  # the server's own refusal
                        self._reply({"errors": [{"message": str(err)}], "data": None})
                        return
                    except Exception as err:  # a fake's bug: said, not a hung client
                        self._unknown(f"GraphQL {op} raised {type(err).__name__}: {err}")
                        self._reply({"errors": [{"message": f"fakewandb: {err!r}"}]})
                        return
                if data is None:
                    self._unknown(f"GraphQL {op}: {' '.join(query.split())[:300]}")
                self._reply({"data": _select(data or {}, query)})
            elif path.endswith("/file_stream") and path.split("/")[-2] in fake.runs:
                with fake._lock:
                    file_stream(fake.runs[path.split("/")[-2]], json.loads(body))
                self._reply({})
            elif path.startswith("/sdk/otel/"):
                self._reply({})
            else:
                self._unknown(f"POST {path}")
                self._reply({})

        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = self.path.split("?")[0].split("/", 3)  # "", "upload", run, file
            with fake._lock:
                if len(parts) == 4 and parts[1] == "upload" and parts[2] in fake.runs:
                    fake.runs[parts[2]].files[parts[3]] = body
                    known = True
                else:
                    known = artifact_put(fake, self.path.split("?")[0], body)
            if not known:
                self._unknown(f"PUT {self.path}")
            self._reply({})

        def do_GET(self) -> None:  # downloads of what was uploaded: run files, artifacts
            path = self.path.split("?")[0]
            with fake._lock:
                body = run_download(fake, path)
                body = artifact_download(fake, path) if body is None else body
            if body is None:
                self._unknown(f"GET {self.path}")
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_DELETE(self) -> None:  # nothing wandb 0.31 needs here
            self._unknown(f"{self.command} {self.path}")
            self._reply({})

        do_PATCH = do_DELETE

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the interesting traffic is in fake.ops / fake.unknown

    return Handler


if __name__ == "__main__":  # a manual session: `python tests/fakewandb.py`, then export these
    with FakeWandb() as fake:
        print("\n".join(f"export {k}={v}" for k, v in fake.env().items()), flush=True)
        threading.Event().wait()

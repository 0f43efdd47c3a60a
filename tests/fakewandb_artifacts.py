"""Artifacts in the loopback fake (tests/fakewandb.py), as wandb 0.31.0 sends them.

Write path, read off wandb-core's own GraphQL documents (`strings bin/wandb-core`):
CreateArtifact -> CreateArtifactFiles (an upload URL per file) -> PUT each file ->
CreateArtifactManifest -> PUT the manifest -> CommitArtifact; UseArtifact marks an input.
The Python side asks ArtifactType before logging (is the name taken by another type?).
A run's tables (`wandb.Table` in run.log) are such artifacts too: "run-<id>-<key>", type
"run_table". Versions: a new digest in a collection is v<n+1> and takes "latest"; the same
digest again is the same version (the server de-duplicates), which keeps a republish from
adding a copy.

Read path (`wandb.Api().artifact(...)`, `run.logged_artifacts()`, `Artifact.download()`), off
wandb 0.31's generated queries (wandb/sdk/artifacts/_generated/operations.py):
ArtifactMembershipByName -> FetchArtifactManifest -> GET the manifest ->
GetArtifactMembershipFileUrls -> GET each file; RunOutputArtifacts lists what a run logged.
The answers are parsed by pydantic models with literal `__typename`s, so those are given.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakewandb_runs import NOW, project_node

if TYPE_CHECKING:
    from tests.fakewandb import FakeWandb


@dataclass
class FakeArtifact:
    id: str
    name: str  # the collection (sequence) name, e.g. "run-abc-heatmap_table" or "report"
    type: str
    run: str  # the run that logged it
    project: str
    digest: str
    version: int = 0
    state: str = "PENDING"  # -> COMMITTED
    aliases: list[str] = field(default_factory=list)
    metadata: str | None = None
    description: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # by path in the artifact
    manifest: bytes = b""
    used_by: list[str] = field(default_factory=list)  # runs that use_artifact'ed it


def collection(fake: FakeWandb, project: str, name: str) -> list[FakeArtifact]:
    """The committed versions of a collection, oldest first."""
    return [a for a in fake.artifacts.values()
            if (a.project, a.name, a.state) == (project, name, "COMMITTED")]  # fmt: skip


def find(fake: FakeWandb, project: str, name_alias: str) -> FakeArtifact | None:
    """NAME:ALIAS or NAME:vN (NAME alone reads as NAME:latest)."""
    name, _, alias = name_alias.partition(":")
    for a in reversed(collection(fake, project, name)):
        if alias in ("", "latest") and "latest" in a.aliases:
            return a
        if alias == f"v{a.version}" or alias in a.aliases:
            return a
    return None


def _manifest_node(fake: FakeWandb, a: FakeArtifact) -> dict[str, Any]:
    url = f"{fake.url}/artifact-manifest/{a.id}"
    return {"id": a.id, "file": {"id": a.id, "uploadUrl": url, "uploadHeaders": [],
                                 "directUrl": url}}  # fmt: skip


def artifact_graphql(fake: FakeWandb, op: str, v: dict[str, Any]) -> dict[str, Any] | None:
    if op == "ArtifactType":
        found = find(fake, v["project"], v["name"])
        node = {"artifactType": {"name": found.type}} if found else None
        return {"project": {"artifact": node}}
    if op == "CreateArtifact":
        i = v["input"]
        name = i["artifactCollectionName"]
        same = [a for a in collection(fake, i["projectName"], name) if a.digest == i["digest"]]
        if same:  # the same content again: that version, nothing new to upload
            a = same[-1]
        else:
            a = FakeArtifact(
                secrets.token_hex(6), name, i["artifactTypeName"], i.get("runName") or "",
                i["projectName"], i["digest"], aliases=list(_aliases(i)),
                metadata=i.get("metadata"), description=i.get("description"),
            )  # fmt: skip
            fake.artifacts[a.id] = a
        latest = collection(fake, a.project, a.name)
        seq = {"latestArtifact": {"id": latest[-1].id} if latest else None}
        return {"createArtifact": {"artifact": {"id": a.id, "state": a.state,
                                                "artifactSequence": seq}}}  # fmt: skip
    if op == "CreateArtifactFiles":
        edges: list[dict[str, Any]] = []
        for f in v["input"]["artifactFiles"]:
            url = f"{fake.url}/artifact-file/{f['artifactID']}/{f['name']}"
            edges.append({"node": {"storagePath": f"{f['artifactID']}/{f['name']}",
                                   "uploadUrl": url, "uploadHeaders": [],
                                   "uploadMultipartUrls": None,
                                   "artifact": {"id": f["artifactID"]}}})  # fmt: skip
        return {"createArtifactFiles": {"files": {"edges": edges}}}
    if op in ("CreateArtifactManifest", "UpdateArtifactManifest"):
        aid = v.get("artifactID") or v["artifactManifestID"]
        key = "createArtifactManifest" if op.startswith("Create") else "updateArtifactManifest"
        return {key: {"artifactManifest": _manifest_node(fake, fake.artifacts[aid])}}
    if op == "CommitArtifact":
        a = fake.artifacts[v["artifactID"]]
        if a.state != "COMMITTED":
            earlier = collection(fake, a.project, a.name)
            for old in earlier:
                old.aliases = [x for x in old.aliases if x not in a.aliases]
            a.version, a.state = len(earlier), "COMMITTED"
        return {"commitArtifact": {"artifact": {"id": a.id, "digest": a.digest}}}
    if op == "UseArtifact":
        i = v["input"]
        a = fake.artifacts[i["artifactID"]]
        a.used_by.append(i["runName"])
        return {"useArtifact": {"artifact": {"id": a.id}}}
    return _read_graphql(fake, op, v)


def _read_graphql(fake: FakeWandb, op: str, v: dict[str, Any]) -> dict[str, Any] | None:
    if op == "ArtifactMembershipByName":  # Api().artifact("E/P/NAME:ALIAS")
        found = find(fake, v["project"], v["name"])
        member = _membership_node(fake, found) if found else None
        return {"project": {"artifactCollectionMembership": member}}
    if op == "FetchArtifactManifest":
        a = fake.artifacts.get(v["id"])
        return {"artifact": {"currentManifest": _manifest_node(fake, a)} if a else None}
    if op == "GetArtifactMembershipFileUrls":
        found = find(fake, v["project"], f"{v['collection']}:{v['alias']}")
        files = None
        if found:
            edges = [{"node": {"__typename": "File", "name": name,
                               "directUrl": f"{fake.url}/artifact-file/{found.id}/{name}"}}
                     for name in found.files]  # fmt: skip
            info = {"__typename": "PageInfo", "endCursor": None, "hasNextPage": False}
            files = {"files": {"pageInfo": info, "edges": edges}}
        coll = {"__typename": "ArtifactSequence", "artifactMembership": files}
        return {"project": {"artifactCollection": coll}}
    if op == "RunOutputArtifacts":  # run.logged_artifacts()
        logged = [a for a in fake.artifacts.values()
                  if a.run == v["run"] and a.state == "COMMITTED"]  # fmt: skip
        info = {"__typename": "PageInfo", "endCursor": None, "hasNextPage": False}
        edges = [{"node": _artifact_node(fake, a)} for a in logged]
        page = {"totalCount": len(logged), "pageInfo": info, "edges": edges}
        return {"project": {"run": {"artifacts": page}}}
    return None


def _artifact_node(fake: FakeWandb, a: FakeArtifact) -> dict[str, Any]:
    """wandb's ArtifactFragment."""
    seq = {"__typename": "ArtifactSequence", "name": a.name,
           "project": _project_info(fake, a.project)}  # fmt: skip
    return {
        "__typename": "Artifact", "id": a.id, "artifactSequence": seq, "versionIndex": a.version,
        "artifactType": {"name": a.type}, "description": a.description, "metadata": a.metadata,
        "ttlDurationSeconds": -1, "ttlIsInherited": True, "tags": [], "historyStep": None,
        "state": a.state, "size": sum(len(b) for b in a.files.values()), "digest": a.digest,
        "digestAlgorithm": "MANIFEST_MD5", "commitHash": None, "fileCount": len(a.files),
        "createdAt": NOW, "updatedAt": NOW, "aliases": [
            _alias_node(a, x) | {"artifactCollection": seq} for x in a.aliases
        ],
    }  # fmt: skip


def _membership_node(fake: FakeWandb, a: FakeArtifact) -> dict[str, Any]:
    coll = {"__typename": "ArtifactSequence", "name": a.name,
            "project": _project_info(fake, a.project)}  # fmt: skip
    return {"__typename": "ArtifactCollectionMembership", "id": a.id, "versionIndex": a.version,
            "createdAt": NOW, "aliases": [_alias_node(a, x) for x in a.aliases],
            "artifactCollection": coll, "artifact": _artifact_node(fake, a)}  # fmt: skip


def _alias_node(a: FakeArtifact, alias: str) -> dict[str, Any]:
    return {"__typename": "ArtifactAlias", "id": f"{a.id}:{alias}", "alias": alias}


def _project_info(fake: FakeWandb, project: str) -> dict[str, Any]:
    return project_node(fake, project) | {"internalId": "1"}


def artifact_download(fake: FakeWandb, path: str) -> bytes | None:
    """GET of a manifest or a file at the URLs handed out above; None when not one."""
    parts = path.split("/", 3)
    a = fake.artifacts.get(parts[2]) if len(parts) >= 3 else None
    if a is not None and parts[1] == "artifact-manifest" and len(parts) == 3:
        return a.manifest
    if a is not None and parts[1] == "artifact-file" and len(parts) == 4:
        return a.files.get(parts[3])
    return None


def _aliases(i: dict[str, Any]) -> list[str]:
    names = [x["alias"] if isinstance(x, dict) else x for x in i.get("aliases") or []]
    return list(dict.fromkeys(["latest", *names]))


def artifact_put(fake: FakeWandb, path: str, body: bytes) -> bool:
    """PUT of a file or a manifest at the URLs handed out above; False when not one."""
    parts = path.split("/", 3)  # "", "artifact-file", id, name  |  "", "artifact-manifest", id
    if len(parts) >= 3 and parts[2] in fake.artifacts:
        a = fake.artifacts[parts[2]]
        if parts[1] == "artifact-file" and len(parts) == 4:
            a.files[parts[3]] = body
            return True
        if parts[1] == "artifact-manifest" and len(parts) == 3:
            a.manifest = body
            return True
    return False

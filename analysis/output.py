"""Writing one call's files: all or nothing, nothing stale beside them, and a manifest.

Every file in an output folder comes from the call that wrote the manifest: the files are
drawn into a temporary folder, moved in, and then any file that this tool writes (by its name
patterns, or listed in the previous manifest) but that this call did not is removed, so a
heatmap of other metrics never sits beside an ANOVA table from an earlier call.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from analysis.labels import slug

MANIFEST = "manifest.json"
# The names this tool writes: only such files are ever removed from a folder as stale.
OWN = (
    "report.pdf",
    "report.png",
    "heatmap_*.png",
    "heatmap_*.svg",
    "interaction_*.png",
    "interaction_*.svg",
    "pivot_*.csv",
    "anova_*.csv",
    MANIFEST,
)


def default_folder(sweep: str, command: str, x: str, y: str) -> Path:
    """reports/<sweep>/<command>_<x>_<y>/: one folder per sweep, command and axes choice."""
    return Path("reports") / sweep / f"{command}_{slug(x)}_{slug(y)}"


def _previous(out: Path) -> set[str]:
    try:
        files = json.loads((out / MANIFEST).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return set()
    return {str(name) for name in files if "/" not in str(name)}  # never outside the folder


def write_outputs(
    out: Path,
    figures: dict[str, Figure],
    tables: dict[str, str],
    described: dict[str, str],
    info: dict[str, Any],
) -> list[Path]:
    """Figures and tables into `out`, stale files removed, then the manifest (last)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    names = [*figures, *tables]
    try:
        for name, fig in figures.items():
            fig.savefig(tmp / name, dpi=150)
        for name, text in tables.items():
            (tmp / name).write_text(text)
        manifest = {
            **info,
            "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "files": {name: described.get(name, "") for name in names},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        stale = {
            p.name
            for p in out.iterdir()
            if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in OWN)
        } | _previous(out)
        for name in stale - {*names, MANIFEST}:
            (out / name).unlink(missing_ok=True)
        paths = []
        for name in names:
            os.replace(tmp / name, out / name)
            paths.append(out / name)
        os.replace(tmp / MANIFEST, out / MANIFEST)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for fig in figures.values():
            plt.close(fig)
    return paths

"""A sweep file: its text, its name, its varied parameters, its question. No engine, no wandb."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml


class SweepError(ValueError):
    """A bad sweep file; the message names the file, the key and the reason (exit code 2)."""


def read_sweep(path: Path | str) -> tuple[str, dict[str, Any]]:
    """Read and parse a sweep YAML into (text, config); the engine's checks are the caller's."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SweepError(f"{path}: cannot read ({err.strerror})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML ({first_line(err)})") from None
    if not isinstance(config, dict):
        raise SweepError(f"{path}: expected a mapping of sweep keys, got {type(config).__name__}")
    return text, config


def sweep_name(path: Path | str, config: dict[str, Any]) -> str:
    """Stable name: the file's stem and a hash of its config, so `run` again resumes it."""
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:6]
    return f"{Path(path).stem}-{digest}"


def varied(config: dict[str, Any]) -> list[str]:
    """Parameters with more than one value, in file order (seed included)."""
    params = config.get("parameters", {})
    return [k for k, spec in params.items() if len(spec.get("values", [])) > 1]


def question(yaml_text: str, config: dict[str, Any]) -> str:
    """The study's question: its `description`, else the YAML's leading comment."""
    if config.get("description"):
        return str(config["description"]).strip()
    lines = []
    for line in yaml_text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(line for line in lines if line)


def looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__

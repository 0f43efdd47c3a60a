"""train.py's command line, in every form `wandb agent`'s macros render a run's values.

- `${args}`: `--lr=0.01`; `${args_no_equals}`: `--lr 0.01`;
- `${args_no_boolean_flags}`: `--batchnorm` for True, nothing for False;
- `${args_no_hyphens}`: `lr=0.01`; `${args_append_hydra}` / `${args_override_hydra}`: `+lr=0.01`,
  `++lr=0.01`;
- `${args_json}`: one JSON object; `${args_json_file}`: the path of a file holding one.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from sweepmap.config import Config, ConfigError, field_docs


def parse_args(argv: Sequence[str], names: Collection[str]) -> dict[str, Any]:
    """{key: value} from argv; an unknown key, a key given twice with two values, or a token
    of no known form raises ConfigError. Values stay strings, except JSON's typed ones."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        pairs, used = _token(argv[i], argv[i + 1] if i + 1 < len(argv) else None)
        for key, value in pairs:
            key = key.replace("-", "_")
            if key not in names:
                raise ConfigError(unknown_key(key, sorted(names)))
            if key in out and str(out[key]) != str(value):
                raise ConfigError(
                    f"{key}: given twice, as {out[key]!r} and {value!r}; give it once"
                )
            out[key] = value
        i += used
    return out


def _token(arg: str, nxt: str | None) -> tuple[list[tuple[str, Any]], int]:
    """The (key, value) pairs `arg` holds, and how many tokens it took (2: `--key value`)."""
    if arg.startswith("{"):
        return _json_object(arg, "the JSON argument"), 1
    if arg.startswith("--") and arg != "--":
        key, sep, value = arg[2:].partition("=")
        if sep:
            return [(key, value)], 1
        if nxt is not None and not nxt.startswith("--"):
            return [(key, nxt)], 2
        return [(key, "True")], 1
    bare = arg.lstrip("+")
    if "=" in bare and not bare.startswith("="):
        key, _, value = bare.partition("=")
        return [(key, value)], 1
    if arg.endswith(".json") and Path(arg).is_file():
        return _json_object(Path(arg).read_text(), arg), 1
    raise ConfigError(
        f"argument {arg!r}: expected --key=value, key=value, a JSON object or a .json file"
    )


def _json_object(text: str, where: str) -> list[tuple[str, Any]]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(obj, dict):
        raise ConfigError(
            f"{where}: expected a JSON object of key: value, got {type(obj).__name__}"
        )
    return list(obj.items())


def unknown_key(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown key {key!r}{hint}; valid keys: {', '.join(valid)}"


def read_param_file(path: str) -> dict[str, Any]:
    """The agent's param file (WANDB_SWEEP_PARAM_PATH), flattened to {key: value}."""
    import yaml

    where = f"WANDB_SWEEP_PARAM_PATH={path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(f"{where}: cannot read ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}: expected a mapping of key: {{value: v}}, got {type(raw).__name__}"
        )
    return {
        str(k): v["value"] if isinstance(v, dict) and "value" in v else v
        for k, v in raw.items()
        if k != "wandb_version"
    }


def cli_values(argv: Sequence[str], param_path: str | None) -> dict[str, Any]:
    """The run's values from the command line and the agent's param file; where both give a
    key they must agree (after coercion), or ConfigError says which says what."""
    names = {*field_docs()}
    args = parse_args(argv, names)
    params = read_param_file(param_path) if param_path else {}
    for key in args.keys() & params.keys():
        given, filed = (
            Config.from_mapping({key: v}).to_dict()[key] for v in (args[key], params[key])
        )
        if given != filed:
            raise ConfigError(
                f"{key}: the command line says {args[key]!r}, the param file "
                f"(WANDB_SWEEP_PARAM_PATH={param_path}) says {params[key]!r}; they must agree"
            )
    return {**params, **args}

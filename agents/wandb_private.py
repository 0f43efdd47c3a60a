"""Every touch of wandb's private internals, in one place, each one guarded.

sweepmap pins wandb 0.31.0 (pyproject.toml) and leans on these internals: the agent's command
macros, the param-file writer, the heartbeat interval of `wandb.agent` (and the CLI agent's
poll, for the contract tests), the module the first `wandb.init` imports, the package list and
git state that every `wandb.init` reads afresh, and wandb-core's reader of offline runs (their
exit, their records). Each helper below checks that wandb is the pinned version and that the
attribute it uses exists; otherwise it takes wandb's own behaviour (or, for those the agent
contract cannot do without, stops with one line) and says so once, in one line, on stderr.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

PINNED = "0.31.0"
# Imported by the first wandb.init of a process (0.31: Run._detect_and_apply_job_inputs).
FIRST_INIT_MODULE = "wandb.sdk.launch.inputs.internal"
_warned: set[str] = set()
T = TypeVar("T")


class WandbMismatch(RuntimeError):
    """The installed wandb lacks an internal the agent contract needs (exit code 2)."""


def _private(module: str, attr: str | None, purpose: str) -> Any | None:
    """`module.attr` (the module itself when attr is None) when wandb is the pinned version
    and has it; None, said once on stderr, when not."""
    import wandb

    why = ""
    if wandb.__version__ != PINNED:
        why = f"wandb is {wandb.__version__}, not the pinned {PINNED}"
    else:
        try:
            found = importlib.import_module(module)
            return found if attr is None else getattr(found, attr)
        except (ImportError, AttributeError):
            why = f"wandb {PINNED} has no {module}{'.' + attr if attr else ''}"
    if purpose not in _warned:
        _warned.add(purpose)
        print(f"sweepmap: {why}; {purpose}", file=sys.stderr, flush=True)
    return None


def preload_first_init() -> bool:
    """Import what the first `wandb.init` imports, before torch: its pydantic models scan
    sys.modules once per class, 0.1 s before torch is loaded and 0.3 s after."""
    return _private(FIRST_INIT_MODULE, None, "its first-init imports load later") is not None


def cache_package_list() -> bool:
    """List the installed packages once per agent rather than at every `wandb.init`."""
    import wandb

    working_set = _private("wandb.util", "working_set", "each run lists the packages itself")
    if working_set is None:
        return False
    packages = list(working_set())
    wandb.util.working_set = lambda: iter(packages)
    return True


def git_settings() -> dict[str, Any] | None:
    """The git state, read once for an agent's life, as `wandb.Settings` keywords; None when
    wandb must read it itself (at every init: five `git` processes)."""
    repo_class = _private("wandb.sdk.lib.gitlib", "GitRepo", "each run reads git itself")
    if repo_class is None:
        return None
    repo = repo_class(lazy=False)
    if repo.root_dir is None:  # not a repository: nothing to record
        return {}
    # An empty remote url (none configured) tells wandb not to look for one again.
    return {
        "git_root": repo.root_dir,
        "git_commit": repo.last_commit,
        "git_remote_url": repo.remote_url or "",
    }


def set_agent_heartbeat(seconds: float) -> bool:
    """`wandb.agent` asks the backend for its next run every 5 s: with runs of seconds, most
    of an in-process agent's time would be that wait."""
    agent = _private("wandb.agents.pyagent", "Agent", "the agent's heartbeat stays at 5 s")
    if agent is None or not hasattr(agent, "HEARTBEAT_SLEEP_SECONDS"):
        return False
    agent.HEARTBEAT_SLEEP_SECONDS = seconds
    return True


def _needed(module: str, attr: str) -> Callable[..., Any]:
    found = _private(module, attr, "cannot go on")
    if found is None:
        raise WandbMismatch(f"the agent contract needs wandb {PINNED}'s {module}.{attr}")
    return found


def save_param_file(path: str, args: dict[str, dict[str, Any]]) -> None:
    """The YAML file `wandb agent` writes for each run (WANDB_SWEEP_PARAM_PATH)."""
    _needed("wandb.sdk.lib.config_util", "save_config_file_from_dict")(path, args)


def command_macros(args: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`${args}`, `${args_no_hyphens}`, ... exactly as `wandb agent` renders them."""
    render = _needed("wandb.sdk.launch.sweeps.utils", "create_sweep_command_args")
    return dict(render({"args": args}))


def expand_envvars(template: list[str]) -> list[str]:
    """`${envvar:NAME}` replaced as `wandb agent` does."""
    expand = _needed("wandb.sdk.launch.sweeps.utils", "create_sweep_command")
    return [str(c) for c in expand(list(template))]


def set_wandb_agent_poll(seconds: float) -> bool:
    """`wandb agent` (the CLI's loop, wandb_agent.Agent) waits 5 s between two looks at its
    runs; the contract tests run it with a shorter wait, the same client and requests."""
    agent = _private("wandb.wandb_agent", "Agent", "the CLI agent's poll stays at 5 s")
    if agent is None or getattr(agent, "POLL_INTERVAL", None) != 5:
        return False
    agent.POLL_INTERVAL = seconds
    return True


def leet_inspect(run_dir: Path, *options: str) -> str:
    """What `wandb leet inspect OPTIONS RUN_DIR` prints (an unstable command of the pinned
    wandb). That command is a thin Python wrapper (wandb/cli/leet.py) around the bundled
    wandb-core binary, `wandb-core leet inspect --no-observability OPTIONS --run-file RUN.wandb
    WANDB_DIR`; this runs the binary so, the same reader and output without the CLI's 0.9 s
    of Python start-up. OSError, SubprocessError or ValueError when it cannot read the run."""
    core_path = _needed("wandb.util", "get_core_path")
    run_dir = run_dir.resolve()
    [run_file] = run_dir.glob("run-*.wandb")  # as the CLI: one log in a run's directory
    argv = [core_path(), "leet", "inspect", "--no-observability", *options,
            "--run-file", str(run_file), str(run_dir.parent)]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout


def _read_offline(run_dir: Path, parse: Callable[[str], T], *options: str) -> T | None:
    """`parse` of what the pinned wandb's own reader prints for a run (`leet_inspect`); None
    when it cannot tell (another wandb, an unreadable run, output it cannot parse)."""
    import wandb

    if wandb.__version__ != PINNED:
        return None
    try:
        return parse(leet_inspect(run_dir, *options))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def offline_run_ended(run_dir: Path) -> bool | None:
    """Whether wandb's files of a run hold its exit record; None when it cannot tell."""
    return _read_offline(
        run_dir, lambda out: json.loads(out).get("exit_code") is not None, "--summary", "--json"
    )


def offline_run_records(run_dir: Path) -> list[dict[str, Any]] | None:
    """A run's records (`{"type": "run", "run": {...}}`, "artifact", ...), one JSON record a
    line of `leet_inspect --json`; None when it cannot tell."""
    return _read_offline(
        run_dir, lambda out: [json.loads(line) for line in out.splitlines()], "--json"
    )

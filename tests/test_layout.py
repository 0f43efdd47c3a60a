"""The layout holds: floors, one guarded place for wandb's internals, every macro train.py reads."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from agents import wandb_private
from agents.contract import MACROS, render_command, unknown_macros, write_params
from sweepmap.args import cli_values
from sweepmap.config import Config, ConfigError

from .conftest import ROOT

# Lower floors never import higher ones (GUIDE.md section 1).
FLOORS = [
    {"data", "models", "sweepmap"},
    {"train"},
    {"agents"},
    {"localsweep"},
    {"analysis", "bench"},
]
FLOOR_OF = {pkg: i for i, floor in enumerate(FLOORS) for pkg in floor}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _sources() -> dict[str, list[Path]]:
    out = {pkg: sorted((ROOT / pkg).glob("*.py")) for pkg in FLOOR_OF if pkg != "train"}
    return out | {"train": [ROOT / "train.py"]}


def test_no_floor_imports_a_higher_one() -> None:
    for pkg, files in _sources().items():
        for path in files:
            higher = {m for m in _imports(path) if FLOOR_OF.get(m, -1) > FLOOR_OF[pkg]}
            assert not higher, f"{path.relative_to(ROOT)} imports {higher} from above"


def test_sweepmap_imports_no_wandb_and_no_sweeps_engine() -> None:
    for path in _sources()["sweepmap"]:
        assert not _imports(path) & {"wandb", "sweeps"}, path


def test_wandb_private_internals_are_touched_in_one_module_only() -> None:
    private = ("wandb.sdk", "wandb.util", "wandb.agents", "pyagent", "HEARTBEAT_SLEEP")
    for path in itertools.chain(*_sources().values()):
        if path.name == "wandb_private.py":
            continue
        text = path.read_text()
        assert not any(p in text for p in private), path


def test_the_fast_paths_are_taken_with_the_pinned_wandb(capsys) -> None:
    import wandb

    assert wandb.__version__ == wandb_private.PINNED
    assert wandb_private.preload_first_init()
    assert wandb_private.set_agent_heartbeat(5)
    assert wandb_private.git_settings() is not None
    assert capsys.readouterr().err == ""  # nothing fell back


def test_another_wandb_falls_back_to_its_own_behaviour_in_one_line(monkeypatch, capsys):
    import wandb

    monkeypatch.setattr(wandb, "__version__", "0.99.0")
    monkeypatch.setattr(wandb_private, "_warned", set())
    before = wandb.util.working_set
    assert wandb_private.cache_package_list() is False and wandb.util.working_set is before
    assert wandb_private.git_settings() is None
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "sweepmap: wandb is 0.99.0, not the pinned 0.31.0; each run lists the packages itself",
        "sweepmap: wandb is 0.99.0, not the pinned 0.31.0; each run reads git itself",
    ]
    with pytest.raises(wandb_private.WandbMismatch, match=r"needs wandb 0\.31\.0"):
        wandb_private.command_macros({"lr": {"value": 0.1}})


POINT = {"lr": 0.01, "batchnorm": False, "residual": True, "optimizer": "sgd", "epochs": 2}
ARG_MACROS = [m for m in MACROS if m.startswith("args")]


@pytest.mark.parametrize("macro", ARG_MACROS)
def test_train_py_reads_back_every_macro_wandb_renders(tmp_path, macro) -> None:
    """What wandb's own helper renders, train.py's parser reads as the same grid point."""
    params = tmp_path / "config.yaml"
    write_params(params, POINT)
    command = ["${env}", "${interpreter}", "${program}", "${" + macro + "}"]
    argv = render_command({"program": "train.py", "command": command}, POINT, tmp_path / "a.json")
    rest = argv[argv.index("train.py") + 1 :]
    assert rest, argv
    # With the param file (as under an agent), and for most macros without it too.
    assert Config.from_mapping(cli_values(rest, str(params))) == Config.from_mapping(POINT)
    if macro != "args_no_boolean_flags":  # it omits False flags: only the param file has them
        assert Config.from_mapping(cli_values(rest, None)) == Config.from_mapping(POINT)


def test_unknown_macros_are_named() -> None:
    assert unknown_macros(["${env}", "${args}", "${envvar:HOME}", "--x=${argz}"]) == ["argz"]


@pytest.mark.parametrize(
    ("argv", "params", "needle"),
    [
        (["--lr=0.1", "--lr=0.2"], None, "lr: given twice, as '0.1' and '0.2'"),
        (["--lr=0.1"], "lr: {value: 0.2}\n", "the command line says '0.1', the param file"),
        ([], "- lr\n", "expected a mapping of key: {value: v}, got list"),
        ([], "lr: [0.1\n", "not valid YAML at line 2"),
        ([], b"\xff\xfe", "not UTF-8 text"),
        ([], None, "cannot read"),
        (["lr"], None, "argument 'lr': expected --key=value"),
    ],
)
def test_bad_command_lines_and_param_files_are_one_line(tmp_path, argv, params, needle):
    path = tmp_path / "params.yaml"
    if isinstance(params, bytes):
        path.write_bytes(params)
    elif params is not None:
        path.write_text(params)
    given = str(path) if params is not None or not argv else None
    with pytest.raises(ConfigError) as err:
        cli_values(argv, given)
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)

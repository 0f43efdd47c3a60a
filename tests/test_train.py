"""train.py end to end, started exactly as `wandb agent` starts it, with wandb offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wandb.sdk.lib.config_util import save_config_file_from_dict

from agents.contract import render_command
from sweepmap import keys
from sweepmap.record import read_record

from .conftest import ROOT, TWO, Ran, offline_env, run_py
from .wandb_offline import inspect_run, leet_inspect_cli, offline_run_dir


def agent_run(tmp_path: Path, env: dict[str, str], point: dict, run_id: str, command=None):
    """Param file, WANDB_RUN_ID and `/usr/bin/env python train.py --k=v ...`, as the agent does."""
    params = tmp_path / "wandb" / "sweep-local" / f"config-{run_id}.yaml"
    save_config_file_from_dict(str(params), {k: {"value": v} for k, v in sorted(point.items())})
    argv = render_command(
        {"program": "train.py", **({"command": command} if command else {})},
        point,
        params.with_suffix(".json"),
    )
    env = {
        **env,
        "WANDB_SWEEP_PARAM_PATH": str(params),
        "WANDB_RUN_ID": run_id,
        "SWEEPMAP_RECORD": str(tmp_path / f"{run_id}.jsonl"),
        # The agent's ${interpreter} is `python` from PATH: the project's venv must come first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    }
    argv[1] = "python"
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return argv, proc


# The default tests' three train.py runs, each in its own folder with its own offline wandb,
# run two at a time with the other tests' work (conftest.TwoAtATime).
AGENT_POINT = {"epochs": 2, "lr": 0.01, "optimizer": "sgd", "seed": 3, "batchnorm": False}
NAN_POINT = {"epochs": 3, "lr": 1.0e10, "optimizer": "sgd", "batchnorm": False}


@TWO.of("test_digits_cnn_reaches_the_bar", 11)
def digits_20_epochs(folder: Path) -> subprocess.CompletedProcess[str]:
    env = offline_env(folder) | {"SWEEPMAP_RECORD": str(folder / "digits.jsonl")}
    return run_py(["train.py", "--epochs=20"], env)


@TWO.of("test_train_py_as_the_agent_starts_it", 7)
def agent_point(folder: Path) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    return agent_run(folder, offline_env(folder), AGENT_POINT, "agentrun1")


@TWO.of("test_exploding_loss_fails_the_run", 7)
def nan_point(folder: Path) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    return agent_run(folder, offline_env(folder), NAN_POINT, "nanrun01")


def test_train_py_as_the_agent_starts_it(ran: Ran) -> None:
    tmp_path, (argv, proc), point = ran.folder, ran.result(), AGENT_POINT
    assert argv[:3] == ["/usr/bin/env", "python", "train.py"]
    assert argv[3:] == [
        "--batchnorm=False", "--epochs=2", "--lr=0.01", "--optimizer=sgd", "--seed=3",
    ]  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/2" in proc.stdout and "epoch 2/2" in proc.stdout

    run_dir = offline_run_dir(tmp_path, "agentrun1")
    logged = inspect_run(run_dir)
    # inspect_run runs wandb-core as `wandb leet inspect` does: the command prints the same.
    assert json.loads(leet_inspect_cli(run_dir, "--summary", "--json")) == logged
    assert logged["state"] == "finished"
    assert {k: logged["config"][k] for k in point} == point
    summary = logged["summary"]
    assert summary[keys.EPOCHS_COMPLETED] == 2 and summary[keys.PARAMETERS] > 0
    for key in (*keys.EPOCH_METRICS, *keys.BEST_OF.values(), keys.RUNTIME, keys.TRAIN_TIME):
        assert isinstance(summary[key], float), key
    assert summary[keys.BEST_VAL_ACCURACY] >= summary[keys.VAL_ACCURACY]

    history, state, record_summary = read_record(tmp_path / "agentrun1.jsonl")
    assert state == "finished" and [h[keys.EPOCH] for h in history] == [1, 2]
    assert record_summary[keys.VAL_ACCURACY] == pytest.approx(summary[keys.VAL_ACCURACY])


@pytest.mark.slow
def test_param_file_alone_sets_the_config(wandb_env, tmp_path) -> None:
    # A sweep `command:` without ${args}: the values arrive only through the locked param file.
    point = {"epochs": 1, "lr": 0.05, "optimizer": "adamw"}
    command = ["${env}", "${interpreter}", "${program}"]
    argv, proc = agent_run(tmp_path, wandb_env, point, "paramonly", command=command)
    assert argv[3:] == []
    assert proc.returncode == 0, proc.stderr
    config = inspect_run(offline_run_dir(tmp_path, "paramonly"))["config"]
    assert (config["lr"], config["optimizer"], config["epochs"]) == (0.05, "adamw", 1)


def test_exploding_loss_fails_the_run(ran: Ran) -> None:
    tmp_path, (_, proc) = ran.folder, ran.result()
    assert proc.returncode == 1
    assert "run failed: train/loss is nan" in proc.stderr or "is inf" in proc.stderr
    logged = inspect_run(offline_run_dir(tmp_path, "nanrun01"))
    assert logged["state"] == "failed" and logged["exit_code"] == 1
    assert "loss is" in logged["summary"][keys.FAILURE]
    _, state, summary = read_record(tmp_path / "nanrun01.jsonl")
    assert state == "failed" and summary[keys.EPOCHS_COMPLETED] < 3


@pytest.mark.slow
def test_save_model_keeps_the_best_model(wandb_env, tmp_path) -> None:
    proc = run_py(["train.py", "--epochs=1", "--save_model=True"], wandb_env)
    assert proc.returncode == 0, proc.stderr
    saved = list(tmp_path.glob("wandb/offline-run-*/files/best-model.pt"))
    assert len(saved) == 1 and saved[0].stat().st_size > 10_000


def test_digits_cnn_reaches_the_bar(ran: Ran) -> None:
    """README figure: the default digits CNN, 20 epochs, >= 0.97 validation accuracy."""
    proc = ran.result()
    assert proc.returncode == 0, proc.stderr
    _, _, summary = read_record(ran.folder / "digits.jsonl")
    assert summary[keys.BEST_VAL_ACCURACY] >= 0.97, summary


@pytest.mark.slow
def test_gestures_gru_reaches_the_bar(wandb_env, tmp_path, gestures_zip) -> None:
    """README figure: the default gestures GRU, 20 epochs, >= 0.90 validation accuracy."""
    record = tmp_path / "gestures.jsonl"
    env = {**wandb_env, "SWEEPMAP_RECORD": str(record), "SWEEPMAP_GESTURES_ZIP": str(gestures_zip)}
    proc = run_py(["train.py", "--dataset=gestures", "--model=gru", "--epochs=20"], env)
    assert proc.returncode == 0, proc.stderr
    _, _, summary = read_record(record)
    assert summary[keys.BEST_VAL_ACCURACY] >= 0.90, summary


def test_no_account_and_no_mode_is_one_line_that_says_how_to_run_offline(tmp_path) -> None:
    """wandb's default mode is online: without a key, train.py's one line says the way out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / ".config")}
    (tmp_path / ".env").write_text("")  # not the project's own .env, if it has one
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--epochs=1"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    ours = [line for line in proc.stderr.splitlines() if line.startswith("train.py:")]
    assert len(ours) == 1 and "No API key configured" in ours[0], proc.stderr
    assert ours[0].endswith("Or set WANDB_MODE=offline (in .env or the environment) to run "
                            "without an account."), ours[0]  # fmt: skip

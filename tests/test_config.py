"""The config: coercion from agent-style strings, and one clear line for each bad input."""

from __future__ import annotations

import pytest

from sweepmap.config import Config, ConfigError, parse_args

from .conftest import run_py


def test_agent_style_args_are_coerced() -> None:
    raw = parse_args(["--lr=1e-3", "--epochs=3", "--batchnorm=False", "--optimizer", "sgd"])
    cfg = Config.from_mapping(raw)
    assert (cfg.lr, cfg.epochs, cfg.batchnorm, cfg.optimizer) == (0.001, 3, False, "sgd")


def test_bare_flag_is_true_and_false_string_is_false() -> None:
    # wandb passes booleans as --flag=False; "False" must not be truthy.
    assert Config.from_mapping(parse_args(["--residual"])).residual is True
    assert Config.from_mapping({"residual": "False", "bidirectional": False}).residual is False


def test_yaml_values_from_param_file_are_accepted() -> None:
    cfg = Config.from_mapping({"lr": "1e-3", "hidden_size": 64.0, "_wandb": {}})
    assert cfg.lr == 1e-3 and cfg.hidden_size == 64 and isinstance(cfg.hidden_size, int)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"lrr": 0.1}, "unknown key 'lrr' (did you mean lr?)"),
        ({"lr": 0}, "lr=0.0: must be > 0"),
        ({"lr": "fast"}, "lr='fast': expected float"),
        ({"dropout": 1.0}, "dropout=1.0: must be in [0, 1)"),
        ({"dropout": -0.1}, "dropout=-0.1: must be in [0, 1)"),
        ({"optimizer": "adagrad"}, "optimizer='adagrad': allowed: sgd, adam, adamw, rmsprop"),
        ({"dataset": "mnist"}, "dataset='mnist': allowed: digits, gestures, fashion"),
        ({"epochs": 2.5}, "epochs=2.5: expected an integer"),
        ({"epochs": True}, "epochs=True: expected int"),
        ({"batchnorm": "maybe"}, "batchnorm='maybe': expected True or False"),
        ({"kernel_size": 4}, "kernel_size=4: must be an odd integer >= 1"),
        ({"dataset": "gestures", "model": "cnn"}, "model=cnn: not for dataset=gestures"),
    ],
)
def test_bad_values_name_the_key(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        Config.from_mapping(raw)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--lr=-1"], "lr=-1"),
        (["--dropout=1.5"], "dropout=1.5"),
        (["--optimizer=adagrad"], "optimizer"),
        (["--dataset=imagenet"], "dataset"),
        (["--hidden=3"], "unknown key 'hidden'"),
        (["--epochs=zero"], "epochs"),
    ],
)
def test_train_py_bad_input_exits_2_with_one_line(wandb_env, tmp_path, args, key) -> None:
    proc = run_py(["train.py", *args], wandb_env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in proc.stderr
    # Validation happens before wandb.init: no run folder was created.
    assert not list(tmp_path.glob("wandb/*run-*"))

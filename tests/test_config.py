"""The config: coercion from agent-style strings, and one clear line for each bad input."""

from __future__ import annotations

import dataclasses

import pytest

from sweepmap import args
from sweepmap.config import (
    INPUT_LAYOUT,
    MODELS_FOR,
    READ_BY,
    SHORTEST_SIDE,
    Config,
    ConfigError,
    field_docs,
)

from .conftest import run_py


def parse_args(argv: list[str]) -> dict[str, object]:
    """train.py's command line, as train.py reads it (sweepmap/args.py)."""
    return args.parse_args(argv, field_docs())


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
        ({"kernel_size": 4}, "kernel_size=4: must be an odd integer in 1..51"),
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


# --- upper bounds, the data's shapes, options the model ignores, the machine (issue 16) ---


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"epochs": "1e9"}, "epochs=1000000000: must be 1..1000"),
        ({"batch_size": 1e12}, "batch_size=1000000000000: must be 1..65536"),
        ({"threads": 1000}, "threads=1000: must be 0..256"),
        ({"kernel_size": 1001}, "kernel_size=1001: must be an odd integer in 1..51"),
        ({"seed": "1e30"}, "seed=1000000000000000019884624838656: must be in [0, 2**32)"),
        ({"seed": 2**32}, "seed=4294967296: must be in [0, 2**32)"),
        ({"split_seed": -1}, "split_seed=-1: must be in [0, 2**32)"),
        ({"filters": "1e8"}, "filters=100000000: must be 1..1024"),
        ({"hidden_size": 1e9, "model": "gru"}, "hidden_size=1000000000: must be 1..1024"),
        ({"num_layers": 9}, "num_layers=9: must be 1..8"),
        ({"head_layers": 5}, "head_layers=5: must be 0..4"),
        ({"squeeze_excite": 65}, "squeeze_excite=65: must be 0..64"),
        ({"filter_growth": 5}, "filter_growth=5.0: must be in [1.0, 4.0]"),
        ({"block": "dense"}, "block='dense': allowed: plain, residual, inception"),
        ({"model": "vit"}, "model='vit': allowed: cnn, mlp, cnn1d, lstm, gru"),
        ({"kernel_size": 9}, "kernel_size=9: longer than the input of dataset=digits (8)"),
        ({"dataset": "fashion", "kernel_size": 29}, "kernel_size=29: longer than the input"),
        ({"dataset": "gestures", "model": "cnn1d", "kernel_size": 11}, "dataset=gestures (10)"),
        ({"filters": 1024, "filter_growth": 4, "num_blocks": 3}, "the last block has 16384"),
        ({"filters": 3, "block": "inception"}, "filters=3: block=inception splits them"),
    ],
)
def test_values_past_what_a_run_can_do_are_refused(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        Config.from_mapping(raw)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_the_largest_allowed_values_pass() -> None:
    Config.from_mapping({"kernel_size": 7, "seed": 2**32 - 1, "epochs": 1000, "threads": 256})
    Config.from_mapping({"dataset": "fashion", "kernel_size": 27, "filters": 512})
    Config.from_mapping({"dataset": "gestures", "model": "cnn1d", "kernel_size": 9})
    Config.from_mapping({"model": "gru", "dataset": "gestures", "hidden_size": 1024})
    Config.from_mapping({"filters": 512, "filter_growth": 2, "num_blocks": 3})  # 2048 wide


def test_the_shortest_sides_are_those_of_the_data(gestures_zip, tmp_path, monkeypatch) -> None:
    from data import load_dataset

    digits = load_dataset("digits")
    assert min(digits.info.image_size) == SHORTEST_SIDE["digits"]
    rows = load_dataset("digits", as_sequence=True)
    assert rows.train.lengths is not None and int(rows.train.lengths.min()) == 8
    monkeypatch.setenv("SWEEPMAP_GESTURES_ZIP", str(gestures_zip))
    gestures = load_dataset("gestures", data_dir=tmp_path)
    lengths = [s.lengths for s in (gestures.train, gestures.valid) if s.lengths is not None]
    assert min(int(t.min()) for t in lengths) == SHORTEST_SIDE["gestures"]
    assert SHORTEST_SIDE["fashion"] == 28  # Fashion-MNIST's 28x28 (its data are not here)


def _other_value(key: str) -> object:
    """A valid value of `key` that is not its default."""
    f = {f.name: f for f in dataclasses.fields(Config)}[key]
    if f.metadata["choices"]:
        return next(c for c in f.metadata["choices"] if c != f.default)
    if isinstance(f.default, bool):
        return not f.default
    special = {"kernel_size": 5, "momentum": 0.5, "filter_growth": 1.5}
    default: int = f.default  # type: ignore[assignment]  # every field has a default
    return special.get(key, default + 1)


@pytest.mark.parametrize("key", sorted(READ_BY))
def test_an_option_the_run_ignores_is_refused_unless_left_at_its_default(key: str) -> None:
    decider, readers = READ_BY[key]
    choices = {f.name: f for f in dataclasses.fields(Config)}[decider].metadata["choices"]
    assert set(readers) <= set(choices), (key, readers)
    base = {"model": "mlp"}  # it reads every dataset
    for by in choices:
        point = {**base, decider: by}
        if decider == "model":  # a dataset this model can read
            point["dataset"] = "gestures" if "gestures" in _datasets_of(by) else "digits"
        Config.from_mapping({**point, key: getattr(Config(), key)})  # the default: always fine
        other = {**point, key: _other_value(key)}
        if by in readers:
            Config.from_mapping(other)
            continue
        with pytest.raises(ConfigError) as err:
            Config.from_mapping(other)
        message = str(err.value)
        assert message.startswith(f"{key}=") and f"does nothing for {decider}={by}" in message


def _datasets_of(model: str) -> list[str]:
    return [d for d, models in MODELS_FOR.items() if model in models]


def test_ignored_option_messages_name_the_readers() -> None:
    with pytest.raises(ConfigError) as err:
        Config.from_mapping(parse_args(["--model=cnn", "--bidirectional=True"]))
    assert str(err.value) == (
        "bidirectional=True: does nothing for model=cnn (read by lstm, gru); "
        "leave it at its default False"
    )
    # Sweeps fix keys for every model: the defaults of another model's keys stay accepted.
    Config.from_mapping({"model": "cnn", "bidirectional": False, "hidden_size": 64})
    # The keys the new models share: the MLP reads batchnorm, width and depth.
    Config.from_mapping({"model": "mlp", "batchnorm": False, "hidden_size": 8, "num_layers": 4})
    with pytest.raises(ConfigError, match=r"momentum=0\.5: does nothing for optimizer=adam"):
        Config.from_mapping({"momentum": 0.5})
    with pytest.raises(ConfigError, match="split_seed=1: does nothing for dataset=fashion"):
        Config.from_mapping({"dataset": "fashion", "split_seed": 1})


def test_every_existing_sweep_key_combination_still_passes() -> None:
    # block=residual is the old residual=True; both together, and with inception, are fine.
    assert Config.from_mapping({"block": "residual", "residual": True}).block == "residual"
    Config.from_mapping({"block": "inception", "residual": True, "squeeze_excite": 4})
    Config.from_mapping({"model": "gru", "dataset": "gestures", "residual": True})


def test_coerce_checks_one_key_alone() -> None:
    # train.py compares the command line and the param file key by key: no combination check.
    assert Config.coerce("hidden_size", "128.0") == 128
    assert Config.coerce("bidirectional", "True") is True
    with pytest.raises(ConfigError, match="unknown key 'hiden_size'"):
        Config.coerce("hiden_size", 3)


def test_layouts_follow_the_one_table() -> None:
    assert Config(model="mlp").as_sequence is False  # digits flattened
    assert Config(model="mlp", dataset="gestures").as_sequence is True
    assert Config(model="cnn1d").as_sequence is True  # digits read as rows
    assert MODELS_FOR["gestures"] == ("mlp", "cnn1d", "lstm", "gru")
    assert MODELS_FOR["digits"] == tuple(INPUT_LAYOUT)


def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_the_machine_checks_refuse_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from sweepmap.runtime import pick_device, usable_cores

    _no_gpu(monkeypatch)
    with pytest.raises(ConfigError, match=r"^bf16=True: needs a CUDA GPU, and this run would "):
        pick_device(Config(bf16=True))
    with pytest.raises(ConfigError, match=r"^device=cuda: not available here"):
        pick_device(Config(device="cuda"))
    too_many = usable_cores() + 1
    with pytest.raises(ConfigError, match=rf"^threads={too_many}: this machine has"):
        pick_device(Config(threads=too_many))
    assert pick_device(Config(threads=usable_cores())).type == "cpu"


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--kernel_size=1001"], "kernel_size=1001"),
        (["--seed=1e30"], "seed=1000000000000000019884624838656"),
        (["--filters=1e8"], "filters=100000000"),
        (["--model=gru", "--dataset=gestures", "--hidden_size=1e9"], "hidden_size=1000000000"),
        (["--bidirectional=True"], "bidirectional=True: does nothing for model=cnn"),
        (["--epochs=1e9"], "epochs=1000000000"),
    ],
)
def test_train_py_refuses_past_the_bounds_before_wandb(wandb_env, tmp_path, args, key) -> None:
    proc = run_py(["train.py", *args], wandb_env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("wandb/*run-*"))


def test_train_py_refuses_bf16_without_a_gpu(wandb_env, tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: bf16 is allowed here")
    proc = run_py(["train.py", "--bf16=True", "--epochs=1"], wandb_env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bf16=True: needs a CUDA GPU" in lines[0], proc.stderr
    assert not list(tmp_path.glob("wandb/*run-*"))

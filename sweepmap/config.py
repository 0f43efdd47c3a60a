"""The one typed config of a run, from the command line (or a sweep) to the model.

Values arrive as strings (`--lr=1e-3` from `wandb agent`'s `${args}`) or as YAML scalars
(the param file in WANDB_SWEEP_PARAM_PATH, locked into `run.config`); both go through
`Config.from_mapping`, which coerces, range-checks and fails with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DATASETS = ("digits", "gestures", "fashion")
# The input layout each model reads: images (B, C, H, W), or zero-padded sequences (B, T, F)
# with their lengths. The one place that says so: the data are loaded in this layout.
INPUT_LAYOUT = {"cnn": "image", "lstm": "sequence", "gru": "sequence"}
MODELS = tuple(INPUT_LAYOUT)
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("none", "cosine", "step")
POOLING = ("max", "avg", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
# The layouts each dataset can be read in: images can be read row by row as sequences;
# gestures are variable-length sequences only.
LAYOUTS_OF = {
    "digits": ("image", "sequence"),
    "gestures": ("sequence",),
    "fashion": ("image", "sequence"),
}
MODELS_FOR = {
    name: tuple(m for m, layout in INPUT_LAYOUT.items() if layout in layouts)
    for name, layouts in LAYOUTS_OF.items()
}


class ConfigError(ValueError):
    """A bad key or value; its message is the one line a user sees (exit code 2)."""


def _opt(
    default: Any,
    doc: str,
    *,
    choices: Sequence[str] = (),
    check: Callable[[Any], bool] | None = None,
    allowed: str = "",
) -> Any:
    meta = {"doc": doc, "choices": tuple(choices), "check": check, "allowed": allowed}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    """Everything that defines one training run. Field docs double as `train.py --help`."""

    # data
    dataset: str = _opt(
        "digits", "digits (offline, bundled), gestures or fashion", choices=DATASETS
    )
    split_seed: int = _opt(
        0, "seed of the train/valid split; keep it fixed within a study", check=lambda v: v >= 0,
        allowed=">= 0",
    )  # fmt: skip
    # model
    model: str = _opt("cnn", "cnn, lstm or gru", choices=MODELS)
    dropout: float = _opt(
        0.0, "dropout before the head (and between RNN layers / after CNN blocks)",
        check=lambda v: 0.0 <= v < 1.0, allowed="in [0, 1)",
    )  # fmt: skip
    num_blocks: int = _opt(2, "CNN: conv blocks", check=lambda v: 1 <= v <= 8, allowed="1..8")
    filters: int = _opt(
        32, "CNN: filters of the first block", check=lambda v: v >= 1, allowed=">= 1"
    )
    filter_growth: float = _opt(
        2.0, "CNN: factor on the filters per block", check=lambda v: 1.0 <= v <= 4.0,
        allowed="in [1, 4]",
    )  # fmt: skip
    kernel_size: int = _opt(
        3, "CNN: kernel size (odd, so 'same' padding is symmetric)",
        check=lambda v: v >= 1 and v % 2 == 1, allowed="an odd integer >= 1",
    )  # fmt: skip
    batchnorm: bool = _opt(True, "CNN: batchnorm after each conv")
    residual: bool = _opt(False, "CNN: residual skip connection around each block")
    pooling: str = _opt("max", "CNN: downsampling after each block", choices=POOLING)
    hidden_size: int = _opt(64, "RNN: hidden units", check=lambda v: v >= 1, allowed=">= 1")
    num_layers: int = _opt(2, "RNN: stacked layers", check=lambda v: 1 <= v <= 8, allowed="1..8")
    bidirectional: bool = _opt(False, "RNN: read the sequence both ways")
    # optimisation
    optimizer: str = _opt("adam", "sgd (with momentum), adam, adamw or rmsprop", choices=OPTIMIZERS)
    lr: float = _opt(1e-3, "learning rate", check=lambda v: v > 0, allowed="> 0")
    momentum: float = _opt(
        0.9, "momentum of sgd and rmsprop", check=lambda v: 0.0 <= v < 1.0, allowed="in [0, 1)"
    )
    weight_decay: float = _opt(0.0, "weight decay", check=lambda v: v >= 0, allowed=">= 0")
    scheduler: str = _opt("none", "learning-rate schedule over the epochs", choices=SCHEDULERS)
    batch_size: int = _opt(32, "batch size", check=lambda v: v >= 1, allowed=">= 1")
    epochs: int = _opt(10, "epochs: the training budget", check=lambda v: v >= 1, allowed=">= 1")
    seed: int = _opt(0, "seed of init and batch order: the replicate", check=lambda v: v >= 0,
                     allowed=">= 0")  # fmt: skip
    # runtime
    device: str = _opt("auto", "auto picks cuda, then mps, then cpu", choices=DEVICES)
    threads: int = _opt(
        0, "torch CPU threads; 0 = 1 (small models run faster on one thread)",
        check=lambda v: v >= 0, allowed=">= 0",
    )  # fmt: skip
    bf16: bool = _opt(False, "bf16 autocast (cuda only)")
    save_model: bool = _opt(False, "keep the best model as a wandb artifact")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Config:
        """Coerce and validate; unknown keys and bad values raise ConfigError."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key.startswith("_"):  # wandb's own entries in run.config, e.g. _wandb
                continue
            if key not in fields:
                raise ConfigError(_unknown_key(key, list(fields)))
            values[key] = _coerce(fields[key], value)
        cfg = cls(**values)
        cfg.check_combination()
        return cfg

    def check_combination(self) -> None:
        allowed = MODELS_FOR[self.dataset]
        if self.model not in allowed:
            raise ConfigError(
                f"model={self.model}: not for dataset={self.dataset}; allowed: {', '.join(allowed)}"
            )
        if self.bf16 and self.device in ("cpu", "mps"):
            raise ConfigError(f"bf16=True: needs device cuda or auto, not {self.device}")

    @property
    def as_sequence(self) -> bool:
        """Whether the model reads sequences (the data are loaded so)."""
        return INPUT_LAYOUT[self.model] == "sequence"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Config:
        return Config.from_mapping({**self.to_dict(), **changes})


def field_docs() -> dict[str, str]:
    return {f.name: f.metadata["doc"] for f in dataclasses.fields(Config)}


def parse_args(argv: Sequence[str]) -> dict[str, str]:
    """`--key=value`, `--key value` or a bare `--flag` (True), as the agent's macros pass them."""
    out: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(Config)}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"argument {arg!r}: expected --key=value")
        key, sep, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in names:
            raise ConfigError(_unknown_key(key, sorted(names)))
        if not sep:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and not nxt.startswith("--"):
                value, i = nxt, i + 1
            else:
                value = "True"
        out[key] = value
        i += 1
    return out


def _unknown_key(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown key {key!r}{hint}; valid keys: {', '.join(valid)}"


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    kind = type(f.default)
    bad = ConfigError(f"{f.name}={value!r}: expected {kind.__name__}")
    if kind is bool:
        if isinstance(value, bool):
            out: Any = value
        elif isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            out = value.strip().lower() in _TRUE
        else:
            raise ConfigError(f"{f.name}={value!r}: expected True or False")
    elif isinstance(value, bool):  # bool is an int subclass: never a number here
        raise bad
    elif kind is int:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(number) or number != int(number):
            raise ConfigError(f"{f.name}={value!r}: expected an integer")
        out = int(number)
    elif kind is float:
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(out):
            raise ConfigError(f"{f.name}={value!r}: expected a finite number")
    else:
        out = str(value)
    choices, check = f.metadata["choices"], f.metadata["check"]
    if choices and out not in choices:
        raise ConfigError(f"{f.name}={value!r}: allowed: {', '.join(choices)}")
    if check is not None and not check(out):
        raise ConfigError(f"{f.name}={out!r}: must be {f.metadata['allowed']}")
    return out

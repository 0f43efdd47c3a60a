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
# The input layouts each model reads, in order of preference: images (B, C, H, W), or
# zero-padded sequences (B, T, F) with their lengths. The one place that says so: the data are
# loaded in the first layout of this list that the dataset offers (`Config.as_sequence`), and a
# model may use a dataset that offers one of them (`MODELS_FOR`). The MLP flattens images, and
# reads a sequence through a length-aware pooling of its steps.
INPUT_LAYOUT = {
    "cnn": ("image",),
    "mlp": ("image", "sequence"),
    "cnn1d": ("sequence",),
    "lstm": ("sequence",),
    "gru": ("sequence",),
}
MODELS = tuple(INPUT_LAYOUT)
CONV_MODELS = ("cnn", "cnn1d")
RNN_MODELS = ("lstm", "gru")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("none", "cosine", "step")
POOLING = ("max", "avg", "none")
BLOCKS = ("plain", "residual", "inception")
DEVICES = ("auto", "cpu", "cuda", "mps")
# The layouts each dataset can be read in: images can be read row by row as sequences;
# gestures are variable-length sequences only.
LAYOUTS_OF = {
    "digits": ("image", "sequence"),
    "gestures": ("sequence",),
    "fashion": ("image", "sequence"),
}
# The shortest side of each dataset's input, known before any data are loaded: digits are
# 8x8 (8 rows as a sequence), fashion 28x28, and the shortest gesture has 10 steps
# (tests/test_config.py checks these against the loaded data). A kernel longer than this
# reads only padding, and a huge one makes `padding="same"` hang (kernel_size=1001).
SHORTEST_SIDE = {"digits": 8, "fashion": 28, "gestures": 10}


def layout_of(model: str, dataset: str) -> str | None:
    """The layout `model` reads `dataset` in, or None when it can read it in none."""
    return next((lay for lay in INPUT_LAYOUT[model] if lay in LAYOUTS_OF[dataset]), None)


MODELS_FOR = {name: tuple(m for m in MODELS if layout_of(m, name)) for name in DATASETS}
# Options that only some models (optimizers, datasets) read: key -> (the key that decides,
# the values that read it). A non-default value where it is not read is refused (exit 2):
# a sweep that varies an option its model ignores would draw a flat, meaningless row. The
# default itself is always accepted, because sweep files fix keys with `value:` for any model.
READ_BY: dict[str, tuple[str, tuple[str, ...]]] = {
    "num_blocks": ("model", CONV_MODELS),
    "filters": ("model", CONV_MODELS),
    "filter_growth": ("model", CONV_MODELS),
    "kernel_size": ("model", CONV_MODELS),
    "block": ("model", CONV_MODELS),
    "squeeze_excite": ("model", CONV_MODELS),
    "pooling": ("model", CONV_MODELS),
    "batchnorm": ("model", (*CONV_MODELS, "mlp")),
    "residual": ("model", (*CONV_MODELS, *RNN_MODELS)),
    "hidden_size": ("model", ("mlp", *RNN_MODELS)),
    "num_layers": ("model", ("mlp", *RNN_MODELS)),
    "bidirectional": ("model", RNN_MODELS),
    "head_layers": ("model", (*CONV_MODELS, *RNN_MODELS)),
    "momentum": ("optimizer", ("sgd", "rmsprop")),
    "split_seed": ("dataset", ("digits", "gestures")),  # fashion comes with its own split
}
MAX_CHANNELS = 2048  # the widest conv block, filters * filter_growth**(num_blocks - 1)
SEED_LIMIT = 2**32  # numpy's seeds are 32-bit; torch's generators take these too


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


def _between(low: float, high: float) -> dict[str, Any]:
    ints = isinstance(low, int) and isinstance(high, int)
    return {
        "check": lambda v: low <= v <= high,
        "allowed": f"{low}..{high}" if ints else f"in [{low}, {high}]",
    }


@dataclass(frozen=True)
class Config:
    """Everything that defines one training run. Field docs double as `train.py --help`.

    Every number has an upper bound: a value past what a run can do fails here, before
    anything is built, not as a crash or a hang after `wandb.init`.
    """

    # data
    dataset: str = _opt("digits", "the data; digits are bundled (offline)", choices=DATASETS)
    split_seed: int = _opt(
        0, "seed of the train/valid split; keep it fixed within a study (digits, gestures)",
        check=lambda v: 0 <= v < SEED_LIMIT, allowed="in [0, 2**32)",
    )  # fmt: skip
    # model
    model: str = _opt("cnn", "the model (README: the model table)", choices=MODELS)
    dropout: float = _opt(
        0.0, "dropout before the head (and between layers / after conv blocks)",
        check=lambda v: 0.0 <= v < 1.0, allowed="in [0, 1)",
    )  # fmt: skip
    num_blocks: int = _opt(2, "CNN, CNN1d: conv blocks", **_between(1, 8))
    filters: int = _opt(32, "CNN, CNN1d: filters of the first block", **_between(1, 1024))
    filter_growth: float = _opt(
        2.0, "CNN, CNN1d: factor on the filters per block", **_between(1.0, 4.0)
    )
    kernel_size: int = _opt(
        3, "CNN, CNN1d: kernel size (odd: symmetric 'same' padding; at most the input's side)",
        check=lambda v: 1 <= v <= 51 and v % 2 == 1, allowed="an odd integer in 1..51",
    )  # fmt: skip
    block: str = _opt(
        "plain", "CNN, CNN1d: the conv block (residual: plain + skip; inception: 4 branches)",
        choices=BLOCKS,
    )  # fmt: skip
    squeeze_excite: int = _opt(
        0, "CNN, CNN1d: squeeze-excite reduction ratio on every block; 0 = off",
        **_between(0, 64),
    )  # fmt: skip
    batchnorm: bool = _opt(True, "CNN, CNN1d, MLP: batchnorm after each conv / linear layer")
    residual: bool = _opt(
        False, "CNN, CNN1d: skip around each block (with block=plain: the residual block); "
        "RNN: skips between stacked layers",
    )  # fmt: skip
    pooling: str = _opt("max", "CNN, CNN1d: downsampling after each block", choices=POOLING)
    hidden_size: int = _opt(64, "RNN: hidden units; MLP: width", **_between(1, 1024))
    num_layers: int = _opt(2, "RNN: stacked layers; MLP: hidden layers", **_between(1, 8))
    bidirectional: bool = _opt(False, "RNN: read the sequence both ways")
    head_layers: int = _opt(
        0, "CNN, CNN1d, RNN: hidden layers of the head (as wide as its input); 0 = one Linear",
        **_between(0, 4),
    )  # fmt: skip
    # optimisation
    optimizer: str = _opt(
        "adam", "the optimizer (sgd and rmsprop with momentum)", choices=OPTIMIZERS
    )
    lr: float = _opt(1e-3, "learning rate", check=lambda v: v > 0, allowed="> 0")
    momentum: float = _opt(
        0.9, "momentum of sgd and rmsprop", check=lambda v: 0.0 <= v < 1.0, allowed="in [0, 1)"
    )
    weight_decay: float = _opt(0.0, "weight decay", check=lambda v: v >= 0, allowed=">= 0")
    scheduler: str = _opt("none", "learning-rate schedule over the epochs", choices=SCHEDULERS)
    batch_size: int = _opt(32, "batch size", **_between(1, 65536))
    epochs: int = _opt(10, "epochs: the training budget", **_between(1, 1000))
    seed: int = _opt(0, "seed of init and batch order: the replicate",
                     check=lambda v: 0 <= v < SEED_LIMIT, allowed="in [0, 2**32)")  # fmt: skip
    # runtime
    device: str = _opt("auto", "auto picks cuda, then mps, then cpu", choices=DEVICES)
    threads: int = _opt(
        0, "torch CPU threads; 0 = 1 (small models run faster on one thread); at most the cores",
        **_between(0, 256),
    )  # fmt: skip
    bf16: bool = _opt(False, "bf16 autocast (cuda only)")
    save_model: bool = _opt(False, "keep the best model as a wandb artifact")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Config:
        """Coerce and validate; unknown keys and bad values raise ConfigError."""
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key.startswith("_"):  # wandb's own entries in run.config, e.g. _wandb
                continue
            values[key] = cls.coerce(key, value)
        cfg = cls(**values)
        cfg.check_combination()
        return cfg

    @classmethod
    def coerce(cls, key: str, value: Any) -> Any:
        """One key's value, coerced and range-checked on its own (no combination checks)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if key not in fields:
            raise ConfigError(_unknown_key(key, list(fields)))
        return _coerce(fields[key], value)

    def check_combination(self) -> None:
        """The checks that need more than one key (and the data's known shapes)."""
        allowed = MODELS_FOR[self.dataset]
        if self.model not in allowed:
            raise ConfigError(
                f"model={self.model}: not for dataset={self.dataset}; allowed: {', '.join(allowed)}"
            )
        if self.bf16 and self.device in ("cpu", "mps"):
            raise ConfigError(f"bf16=True: needs device cuda or auto, not {self.device}")
        defaults = Config()
        for key, (decider, readers) in READ_BY.items():
            value, by = getattr(self, key), getattr(self, decider)
            if by not in readers and value != getattr(defaults, key):
                raise ConfigError(
                    f"{key}={value!r}: does nothing for {decider}={by} (read by "
                    f"{', '.join(readers)}); leave it at its default {getattr(defaults, key)!r}"
                )
        if self.model in CONV_MODELS:
            self._check_conv()

    def _check_conv(self) -> None:
        side = SHORTEST_SIDE[self.dataset]
        if self.kernel_size > side:
            raise ConfigError(
                f"kernel_size={self.kernel_size}: longer than the input of dataset="
                f"{self.dataset} ({side}); allowed: an odd integer <= {side}"
            )
        widest = round(self.filters * self.filter_growth ** (self.num_blocks - 1))
        if widest > MAX_CHANNELS:
            raise ConfigError(
                f"filters={self.filters}: with filter_growth={self.filter_growth} and num_blocks="
                f"{self.num_blocks} the last block has {widest} channels; at most {MAX_CHANNELS}"
            )
        if self.block == "inception" and self.filters < 4:
            raise ConfigError(
                f"filters={self.filters}: block=inception splits them over 4 branches; "
                "allowed: >= 4"
            )

    @property
    def as_sequence(self) -> bool:
        """Whether the model reads this dataset as sequences (the data are loaded so)."""
        return layout_of(self.model, self.dataset) == "sequence"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Config:
        return Config.from_mapping({**self.to_dict(), **changes})


def field_docs() -> dict[str, str]:
    """Each key's doc with what it allows (`train.py --help`)."""
    out = {}
    for f in dataclasses.fields(Config):
        allowed = f.metadata["allowed"] or ", ".join(f.metadata["choices"])
        out[f.name] = f"{f.metadata['doc']} [{allowed}]" if allowed else f.metadata["doc"]
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

"""Every model builds on the real data and trains an epoch through the real loop, on digits and
on gestures (a few hundred samples of each, so the whole module takes seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from data import Dataset, Split, load_dataset
from models import build_model
from sweepmap import keys
from sweepmap.config import MODELS_FOR, Config
from sweepmap.loop import fit

from .conftest import GESTURES_ZIP
from .test_models import one_thread  # noqa: F401  (autouse: one torch thread)

TRAIN, VALID = 192, 64

# Defaults, and the new options together, for each model.
OPTIONS: dict[str, list[dict[str, Any]]] = {
    "cnn": [{}, {"block": "inception", "squeeze_excite": 4, "residual": True, "head_layers": 1}],
    "mlp": [{}, {"num_layers": 3, "batchnorm": False, "dropout": 0.2}],
    "cnn1d": [{}, {"block": "inception", "squeeze_excite": 2, "pooling": "avg", "head_layers": 1}],
    "lstm": [{}, {"residual": True, "bidirectional": True, "head_layers": 2}],
    "gru": [{}, {"residual": True, "dropout": 0.2}],
}


def _subset(split: Split, n: int) -> Split:
    lengths = None if split.lengths is None else split.lengths[:n]
    return Split(split.x[:n], split.y[:n], lengths)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], Dataset]:
    """Digits as images and as rows, and the gestures when the zip is here."""
    out = {}
    for as_sequence in (False, True):
        full = load_dataset("digits", as_sequence=as_sequence)
        out["digits", as_sequence] = Dataset(
            full.info, _subset(full.train, TRAIN), _subset(full.valid, VALID)
        )
    if GESTURES_ZIP.exists():
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SWEEPMAP_GESTURES_ZIP", str(GESTURES_ZIP))
            full = load_dataset("gestures", data_dir=Path(tmp_path_factory.mktemp("data")))
        out["gestures", True] = Dataset(
            full.info, _subset(full.train, TRAIN), _subset(full.valid, VALID)
        )
    return out


CASES = [
    (dataset, model, i)
    for dataset in ("digits", "gestures")
    for model in MODELS_FOR[dataset]
    for i in range(len(OPTIONS[model]))
]


@pytest.mark.parametrize(("dataset", "model", "option"), CASES)
def test_each_model_trains_an_epoch(
    datasets: dict[tuple[str, bool], Dataset], dataset: str, model: str, option: int
) -> None:
    cfg = Config.from_mapping({"dataset": dataset, "model": model, "epochs": 1,
                               **OPTIONS[model][option]})  # fmt: skip
    if (dataset, cfg.as_sequence) not in datasets:
        pytest.skip(f"gestures zip not found at {GESTURES_ZIP}")
    data = datasets[dataset, cfg.as_sequence]
    torch.manual_seed(0)
    net = build_model(cfg, data.info)
    before = [p.detach().clone() for p in net.parameters()]
    result = fit(net, data, cfg, torch.device("cpu"), torch.Generator().manual_seed(0), print)
    assert result.failure is None and result.summary[keys.EPOCHS_COMPLETED] == 1
    assert 0.0 <= result.summary[keys.VAL_ACCURACY] <= 1.0
    # Every parameter moved: each part of the model is reached by the gradient.
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_every_model_is_trained_on_both_datasets_where_it_can() -> None:
    assert {m for d, m, _ in CASES if d == "digits"} == {"cnn", "mlp", "cnn1d", "lstm", "gru"}
    assert {m for d, m, _ in CASES if d == "gestures"} == {"mlp", "cnn1d", "lstm", "gru"}

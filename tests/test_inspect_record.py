"""What a run records of its mistakes: the final validation confusion matrix and the positions
it got wrong, checked against the logged accuracy and against predictions recomputed from the
saved model (or the trained model itself), on real digits for one or two epochs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data import load_dataset
from models import build_model
from sweepmap import keys
from sweepmap.config import Config
from sweepmap.loop import MAX_MISCLASSIFIED, errors_of, fit
from sweepmap.record import Record, read_record
from sweepmap.runtime import seed_everything, set_threads

from .wandb_offline import inspect_run


def _check_against(summary: dict, pred: torch.Tensor, y: torch.Tensor) -> None:
    """The recorded matrix and errors against predictions computed here, by plain argmax."""
    matrix = torch.tensor(summary[keys.VAL_CONFUSION])
    n = len(matrix)
    assert int(matrix.sum()) == len(y)  # every validation sample counted once
    assert float(matrix.trace() / matrix.sum()) == pytest.approx(summary[keys.VAL_ACCURACY])
    for t in range(n):  # row = true class, column = predicted
        for p in range(n):
            assert int(matrix[t, p]) == int(((y == t) & (pred == p)).sum())
    wrong = summary[keys.VAL_MISCLASSIFIED]
    assert len(wrong) == int(matrix.sum() - matrix.trace())  # exactly the off-diagonal count
    assert wrong == torch.nonzero(pred != y).flatten().tolist()
    assert summary[keys.VAL_MISCLASSIFIED_PRED] == pred[wrong].tolist()


@torch.no_grad()
def _predict(model: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    model.eval()
    return model(x, lengths).argmax(dim=1)


def test_a_run_records_its_matrix_and_errors_and_the_saved_model_agrees(
    wandb_env: dict[str, str], tmp_path: Path
) -> None:
    from train import run_point

    # One epoch: the best model (saved) is the final one, whose mistakes are recorded.
    values = {"epochs": 1, "lr": 0.01, "save_model": True, "seed": 4}
    outcome = run_point(values, record=Record(tmp_path / "run.jsonl"))
    assert outcome.state == "finished", outcome.reason
    _, state, summary = read_record(tmp_path / "run.jsonl")
    assert state == "finished"
    errors = summary[keys.VAL_MISCLASSIFIED]
    assert 0 < len(errors) < 200  # one epoch: some mistakes, far from chance

    # The samples again, from split_seed alone, and the model from its saved file.
    cfg = Config.from_mapping(values)
    data = load_dataset(cfg.dataset, cfg.split_seed)
    model = build_model(cfg, data.info)
    (saved,) = tmp_path.glob("wandb/offline-run-*/files/best-model.pt")
    model.load_state_dict(torch.load(saved, weights_only=True))
    _check_against(summary, _predict(model, data.valid.x, None), data.valid.y)

    # wandb's summary holds the same lists, and the chart's table was logged beside them.
    logged = inspect_run(saved.parent.parent)  # wandb/offline-run-*/
    wandb_summary = logged["summary"]
    for key in (keys.VAL_CONFUSION, keys.VAL_MISCLASSIFIED, keys.VAL_MISCLASSIFIED_PRED):
        assert wandb_summary[key] == summary[key], key
    chart = wandb_summary[f"{keys.VAL_CONFUSION_CHART}_table"]
    assert chart["_type"] == "table-file" and chart["nrows"] == 10 * 10


@pytest.mark.parametrize("model", ["gru", "mlp"])
def test_two_epochs_record_the_final_model_not_the_best(model: str) -> None:
    # A sequence model reads digits row by row: the positions index the same split.
    cfg = Config.from_mapping({"epochs": 2, "model": model, "lr": 0.02, "seed": 1})
    set_threads(cfg)
    data = load_dataset(cfg.dataset, cfg.split_seed, as_sequence=cfg.as_sequence)
    net = build_model(cfg, data.info)
    result = fit(net, data, cfg, torch.device("cpu"), seed_everything(cfg.seed), lambda _: None)
    assert result.failure is None
    assert result.summary[keys.VAL_ACCURACY] == result.history[-1][keys.VAL_ACCURACY]
    _check_against(result.summary, _predict(net, data.valid.x, data.valid.lengths), data.valid.y)
    # The same split as the images': what the analysis loads to draw the samples.
    assert torch.equal(data.valid.y, load_dataset(cfg.dataset, cfg.split_seed).valid.y)


def test_a_failed_run_records_no_matrix() -> None:
    cfg = Config.from_mapping({"epochs": 3, "lr": 1e10, "optimizer": "sgd", "batchnorm": False})
    data = load_dataset(cfg.dataset, cfg.split_seed)
    net = build_model(cfg, data.info)
    result = fit(net, data, cfg, torch.device("cpu"), seed_everything(0), lambda _: None)
    assert result.failure is not None and keys.VAL_CONFUSION not in result.summary


def test_errors_are_capped_and_the_matrix_still_counts_them_all() -> None:
    n = MAX_MISCLASSIFIED + 500
    y = torch.zeros(n, dtype=torch.int64)
    pred = torch.ones(n, dtype=torch.int64)  # every one wrong
    errors = errors_of(pred, y, 3)
    assert errors[keys.VAL_CONFUSION] == [[0, n, 0], [0, 0, 0], [0, 0, 0]]
    assert errors[keys.VAL_MISCLASSIFIED] == list(range(MAX_MISCLASSIFIED))
    assert errors[keys.VAL_MISCLASSIFIED_PRED] == [1] * MAX_MISCLASSIFIED

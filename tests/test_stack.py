"""Stacked replicates (sweepmap/stack.py) against the same runs trained alone by `fit`.

Tolerance: 1e-5 absolute on every per-epoch metric. A stack computes each run's sums in
another order (grouped convs, batched matmuls), so its float32 results differ from the run
alone by rounding, about 1e-7 relative per operation; 1-2 epochs of digits grow that to at
most a few 1e-7 here (measured), and 1e-5 leaves room without letting a real difference
through: one validation sample predicted otherwise moves val/accuracy by 1/360.

These configs train stably in float. With batchnorm and Adam or momentum, as in
sweeps/lr_optimizer.yaml, rounding differences grow to 1e-3..1e-2 in two epochs for any change
of kernels, channels-last memory for the run alone included: bench/stacking.py measures both.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from data import Dataset, load_dataset
from models import build_model
from sweepmap import keys
from sweepmap.config import Config
from sweepmap.loop import FitResult, fit
from sweepmap.outcome import StopEarly
from sweepmap.runtime import seed_everything
from sweepmap.stack import can_stack, fit_stacked

CPU = torch.device("cpu")
TOL = 1e-5
# Small and batchnorm-free: trains stably in float, and in a second or two.
CNN = {"model": "cnn", "filters": 8, "batchnorm": False, "epochs": 2}
MLP = {"model": "mlp", "hidden_size": 32, "batchnorm": False, "epochs": 2}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def digits(cfg: Config) -> Dataset:
    return load_dataset("digits", cfg.split_seed, as_sequence=cfg.as_sequence)


def alone(cfg: Config, data: Dataset) -> FitResult:
    generator = seed_everything(cfg.seed)  # as train.py
    return fit(build_model(cfg, data.info), data, cfg, CPU, generator, lambda m: None)


def stacked(cfgs: list[Config], data: Dataset) -> tuple[list[FitResult], list[list[dict]]]:
    logged: list[list[dict]] = [[] for _ in cfgs]
    results = fit_stacked(cfgs, data, CPU, [log.append for log in logged])
    return results, logged


def assert_same(got: FitResult, want: FitResult, tol: float = TOL) -> None:
    assert got.failure == want.failure
    assert len(got.history) == len(want.history)
    for mine, theirs in zip(got.history, want.history, strict=True):
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            assert mine[key] == pytest.approx(value, abs=tol), (key, mine[keys.EPOCH])
    assert got.summary.keys() == want.summary.keys()
    assert got.errors == want.errors  # confusion matrix and misclassified positions


def cfgs_of(base: dict[str, Any], **per_run: list[Any]) -> list[Config]:
    n = len(next(iter(per_run.values())))
    return [Config(**base, **{k: v[i] for k, v in per_run.items()}) for i in range(n)]


def test_seeds_stacked_equal_alone_and_are_logged_each() -> None:
    cfgs = cfgs_of({**CNN, "save_model": True}, seed=[0, 1, 2])
    data = digits(cfgs[0])
    results, logged = stacked(cfgs, data)
    for cfg, result, log in zip(cfgs, results, logged, strict=True):
        want = alone(cfg, data)
        assert_same(result, want)
        assert log == result.history  # each run's epochs went to its own log
        assert result.best_state is not None and want.best_state is not None
        assert result.best_state.keys() == want.best_state.keys()
        for name, tensor in want.best_state.items():
            torch.testing.assert_close(result.best_state[name], tensor, atol=1e-5, rtol=1e-4)
    # three runs, three different results: the seeds' own inits and batch orders
    assert len({r.history[-1][keys.TRAIN_LOSS] for r in results}) == 3


def test_batchnorm_running_stats_as_alone() -> None:
    """The grouped CNN's batchnorm, with plain SGD (stable in float; see the module doc)."""
    base = {**CNN, "batchnorm": True, "optimizer": "sgd", "lr": 0.01, "momentum": 0.0}
    cfgs = cfgs_of(base, seed=[0, 1])
    data = digits(cfgs[0])
    for cfg, result in zip(cfgs, stacked(cfgs, data)[0], strict=True):
        assert_same(result, alone(cfg, data))


@pytest.mark.parametrize(
    "variant",
    [
        {"residual": True},  # a 1x1 conv on the skip: the channels change
        {"block": "residual", "filter_growth": 1.0, "pooling": "avg", "head_layers": 1},
    ],
    ids=["conv-skip", "identity-skip-avg-head"],
)
def test_grouped_cnn_variants(variant: dict[str, Any]) -> None:
    """What sweepmap/stack_cnn.py rewrites of ConvBlock and the head, against the modules."""
    cfgs = cfgs_of({**CNN, **variant, "epochs": 1}, seed=[0, 1])
    data = digits(cfgs[0])
    for cfg, result in zip(cfgs, stacked(cfgs, data)[0], strict=True):
        assert_same(result, alone(cfg, data))


def test_max_pooling_before_relu_is_relu_before_max_pooling_bit_for_bit() -> None:
    """sweepmap/stack_cnn.py puts a block's ReLU after its max pooling: the same values and
    the same gradient, exactly, ties, zeros and all-negative windows included."""
    torch.manual_seed(0)
    x = torch.randn(4, 6, 8, 8).mul(2).round()  # integers: many ties, zeros, negative windows
    x[0, 0, :2, :2] = -1.0  # one window wholly negative, one wholly zero
    x[0, 0, :2, 2:4] = 0.0
    upstream = torch.randn(4, 6, 4, 4)
    outs, grads = [], []
    for pool_first in (False, True):
        leaf = x.clone().requires_grad_()
        out = (torch.relu(torch.max_pool2d(leaf, 2)) if pool_first
               else torch.max_pool2d(torch.relu(leaf), 2))  # fmt: skip
        out.backward(upstream)
        assert leaf.grad is not None
        outs.append(out.detach())
        grads.append(leaf.grad)
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(grads[0], grads[1])
    assert (x.view(4, 6, 4, 2, 4, 2).amax(dim=(3, 5)) <= 0).any()  # the cases were there


@pytest.mark.parametrize(
    ("optimizer", "vary"),
    [(o, v) for o in ("sgd", "adam", "adamw", "rmsprop") for v in ("lr", "weight_decay")]
    + [("adamw", "both")],  # decoupled decay: lr * wd per row, from the rescaled step's start
)
def test_runs_differing_in_lr_and_weight_decay(optimizer: str, vary: str) -> None:
    """One optimizer, each row its own lr (rescaled step) and weight decay (applied by hand),
    under a cosine schedule: each run as its own optimizer would train it."""
    # lrs each trains stably at: rmsprop at 1e-2 diverges, chaotically, alone too
    low = 1e-2 if optimizer == "sgd" else 1e-4
    lrs = [low, 3 * low, 10 * low] if vary != "weight_decay" else [3 * low] * 3
    wds = [0.0, 1e-3, 1e-2] if vary != "lr" else [1e-3] * 3
    base = {**MLP, "optimizer": optimizer, "scheduler": "cosine"}
    cfgs = cfgs_of(base, seed=[0, 1, 2], lr=lrs, weight_decay=wds)
    data = digits(cfgs[0])
    for cfg, result in zip(cfgs, stacked(cfgs, data)[0], strict=True):
        assert_same(result, alone(cfg, data))


@pytest.mark.parametrize(
    "model",
    [
        {"model": "cnn", "filters": 8, "block": "inception", "batchnorm": False},  # vmap CNN
        {"model": "cnn1d", "filters": 8, "batchnorm": False},  # sequences, padded batches
        {"model": "gru", "hidden_size": 16},  # the loop RNN
        {"model": "lstm", "hidden_size": 16, "num_layers": 1, "residual": True},
    ],
    ids=["inception", "cnn1d", "gru", "lstm-residual"],
)
def test_vmapped_models_equal_alone(model: dict[str, Any]) -> None:
    cfgs = cfgs_of({**model, "epochs": 1}, seed=[0, 1])
    data = digits(cfgs[0])
    for cfg, result in zip(cfgs, stacked(cfgs, data)[0], strict=True):
        assert_same(result, alone(cfg, data))


@pytest.mark.parametrize("model", [CNN, MLP], ids=["cnn-dropout2d", "mlp-dropout"])
def test_each_run_draws_its_own_dropout(model: dict[str, Any]) -> None:
    """Two copies of one run (same seed: same init, same batches) in one stack: without
    dropout they stay equal; with it, only the masks can make them differ, and they do."""
    data = digits(Config(**model))

    def gaps(dropout: float) -> list[float]:
        twins = [Config(**model, dropout=dropout)] * 2
        a, b = (r.history for r in stacked(twins, data)[0])
        return [abs(x[keys.TRAIN_LOSS] - y[keys.TRAIN_LOSS]) for x, y in zip(a, b, strict=True)]

    assert max(gaps(0.0)) < 1e-6
    assert min(gaps(0.5)) > 1e-4  # measured: 4e-4 to 3e-3


def test_a_diverging_run_fails_alone_and_the_others_go_on() -> None:
    cfgs = cfgs_of({**MLP, "optimizer": "sgd"}, seed=[0, 1, 2], lr=[0.01, 1e6, 0.01])
    data = digits(cfgs[0])
    results, logged = stacked(cfgs, data)
    wants = [alone(cfg, data) for cfg in cfgs]
    assert wants[1].failure and not wants[0].failure  # the premise: lr=1e6 diverges alone
    for result, want in zip(results, wants, strict=True):
        assert_same(result, want)
    assert results[1].summary[keys.FAILURE] == wants[1].summary[keys.FAILURE]
    assert not math.isfinite(float(wants[1].failure.split()[2]))
    assert len(logged[1]) == len(wants[1].history) < len(logged[0]) == 2


def test_a_stopped_run_leaves_the_stack_as_fit_stops_it() -> None:
    cfgs = cfgs_of({**MLP, "epochs": 3}, seed=[0, 1])

    def stop_at_2(metrics: dict) -> None:
        if metrics[keys.EPOCH] == 2:
            raise StopEarly("hyperband: below the rung")

    data = digits(cfgs[0])
    results = fit_stacked(cfgs, data, CPU, [stop_at_2, lambda m: None])
    generator = seed_everything(cfgs[0].seed)
    want = fit(build_model(cfgs[0], data.info), data, cfgs[0], CPU, generator, stop_at_2)
    assert want.stopped and want.summary[keys.EPOCHS_COMPLETED] == 2  # the premise
    assert_same(results[0], want)
    assert results[0].summary[keys.STOPPED] == want.summary[keys.STOPPED]
    assert_same(results[1], alone(cfgs[1], data))  # the other went on to epoch 3


def test_can_stack_says_why_not_in_one_line() -> None:
    cell = [Config(seed=s) for s in range(3)]
    assert can_stack(cell, CPU) == ""
    assert can_stack(cfgs_of({}, seed=[0, 1], lr=[1e-3, 1e-2], weight_decay=[0.0, 1e-4])) == ""
    gru = [Config(dataset="gestures", model="gru", seed=s) for s in range(2)]
    refusals = {
        "single": can_stack(cell[:1]),
        "optimizer": can_stack([cell[0], cell[1].replace(optimizer="sgd")]),
        "bidirectional": can_stack([c.replace(bidirectional=True) for c in gru]),
        "between": can_stack([c.replace(dropout=0.2) for c in gru]),
        "batchnorm": can_stack([c.replace(model="cnn1d") for c in gru]),
        "the CPU": can_stack(gru, CPU),
    }
    for word, reason in refusals.items():
        assert word in reason and "\n" not in reason, (word, reason)
    assert can_stack(gru) == ""  # it can: vmap trains it (tested above), just slower on a CPU
    with pytest.raises(ValueError, match="differ in optimizer"):
        fit_stacked([cell[0], cell[1].replace(optimizer="sgd")], digits(cell[0]), CPU, [print] * 2)

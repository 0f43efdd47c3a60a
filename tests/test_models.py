"""models/: shapes, parameter counts, dropout and padding invariance, on the CPU."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from models import MODELS, build_model, count_parameters
from models.blocks import ConvBlock
from models.cnn import CNN
from models.rnn import RNN
from sweepmap.config import Config


@dataclass(frozen=True)
class Info:
    """A stand-in for data.DataInfo with the same attributes."""

    name: str
    num_classes: int
    is_sequence: bool
    channels: int = 0
    image_size: tuple[int, int] = (0, 0)
    features: int = 0
    max_len: int = 0


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # As train.py runs (one thread: faster for these small models), and so that a test does
    # not fight the rest of the machine for its cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


DIGITS = Info("digits", 10, False, channels=1, image_size=(8, 8))
FASHION = Info("fashion", 10, False, channels=1, image_size=(28, 28))
GESTURES = Info("gestures", 20, True, features=3, max_len=300)


def images(info: Info, batch: int = 3) -> Tensor:
    return torch.randn(batch, info.channels, *info.image_size)  # (B, C, H, W)


def cnn(info: Info = DIGITS, **kw: Any) -> CNN:
    model = build_model(Config(model="cnn", dataset=info.name, **kw), info)
    assert isinstance(model, CNN)
    return model


def rnn(name: str = "gru", info: Info = GESTURES, **kw: Any) -> RNN:
    model = build_model(Config(model=name, dataset=info.name, **kw), info)
    assert isinstance(model, RNN)
    return model


@pytest.mark.parametrize(
    ("info", "blocks", "batchnorm", "residual", "pooling"),
    list(itertools.product((DIGITS, FASHION), (1, 2, 3, 4), (True, False), (True, False),
                           ("max", "avg", "none"))),
)  # fmt: skip
def test_cnn_every_option_gives_logits(
    info: Info, blocks: int, batchnorm: bool, residual: bool, pooling: str
) -> None:
    model = cnn(
        info, num_blocks=blocks, filters=4, batchnorm=batchnorm, residual=residual, pooling=pooling
    )
    assert model(images(info)).shape == (3, 10)


def test_cnn_default_config_gives_logits() -> None:
    assert cnn(DIGITS)(images(DIGITS)).shape == (3, 10)
    assert cnn(FASHION)(images(FASHION)).shape == (3, 10)


def test_cnn_never_pools_below_one_pixel() -> None:
    # 8x8 with 2x2 pooling: 4, 2, 1, then the fourth (and any later) pooling is skipped.
    model = cnn(DIGITS, num_blocks=6, filters=2, filter_growth=1.0)
    x = images(DIGITS)
    sizes = []
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, ConvBlock):
            sizes.append(tuple(x.shape[-2:]))  # the input of the pooling that follows
    assert sizes == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1), (1, 1)]
    assert tuple(x.shape) == (3, 2, 1, 1)
    assert model(images(DIGITS)).shape == (3, 10)


def test_cnn_pools_a_non_square_image_side_by_side() -> None:
    # (2, 16) -> (1, 8) -> (1, 4) -> (1, 2): the short side stops at 1, the long one goes on.
    info = Info("strip", 4, False, channels=2, image_size=(2, 16))
    model = cnn(info, num_blocks=3, filters=2)
    x = images(info)
    assert tuple(model.features(x).shape) == (3, 8, 1, 2)
    assert model(x).shape == (3, 4)


def test_cnn_block_filters_follow_the_growth() -> None:
    model = cnn(FASHION, num_blocks=4, filters=3, filter_growth=1.5)
    convs = [m.conv.out_channels for m in model.features if isinstance(m, ConvBlock)]
    assert convs == [round(3 * 1.5**i) for i in range(4)] == [3, 4, 7, 10]


@pytest.mark.parametrize("info", [DIGITS, FASHION])
@pytest.mark.parametrize("pooling", ["max", "none"])
def test_cnn_more_filters_or_blocks_means_more_parameters(info: Info, pooling: str) -> None:
    base = count_parameters(cnn(info, filters=8, pooling=pooling))
    assert count_parameters(cnn(info, filters=16, pooling=pooling)) > base
    assert count_parameters(cnn(info, filters=8, num_blocks=3, pooling=pooling)) > base
    assert count_parameters(cnn(info, filters=8, filter_growth=3.0, pooling=pooling)) > base
    assert count_parameters(cnn(info, filters=8, kernel_size=5, pooling=pooling)) > base


def test_cnn_parameter_count_by_hand() -> None:
    # An independent count for 1 -> 4 -> 8 channels, 3x3 kernels, batchnorm, 10 classes.
    conv = (1 * 4 * 9 + 4) + (4 * 8 * 9 + 8)
    bn = 2 * 4 + 2 * 8
    head = 8 * 10 + 10
    assert count_parameters(cnn(DIGITS, filters=4)) == conv + bn + head


@pytest.mark.parametrize(
    ("info", "blocks", "growth"), [(DIGITS, 2, 2.0), (FASHION, 4, 1.5), (DIGITS, 1, 1.0)]
)
def test_batchnorm_adds_two_parameters_per_channel(info: Info, blocks: int, growth: float) -> None:
    kw = {"num_blocks": blocks, "filters": 5, "filter_growth": growth}
    channels = sum(round(5 * growth**i) for i in range(blocks))
    with_bn = count_parameters(cnn(info, batchnorm=True, **kw))
    without = count_parameters(cnn(info, batchnorm=False, **kw))
    assert with_bn - without == 2 * channels


def residual_extra(info: Info, **kw: Any) -> int:
    with_skip = count_parameters(cnn(info, residual=True, **kw))
    return with_skip - count_parameters(cnn(info, residual=False, **kw))


def test_residual_adds_projections_only_where_channels_change() -> None:
    # 1 -> 4 -> 8 -> 16 channels: a 1x1 conv (weights + bias) around every block.
    kw = {"num_blocks": 3, "filters": 4}
    assert residual_extra(DIGITS, filter_growth=2.0, **kw) == (4 + 4) + (32 + 8) + (128 + 16)
    # 1 -> 4 -> 4 -> 4: only the first block changes the channel count.
    assert residual_extra(DIGITS, filter_growth=1.0, **kw) == 4 + 4
    # 4 -> 4 -> 4 -> 4: identity skips, no parameters at all.
    four = Info("four", 10, False, channels=4, image_size=(8, 8))
    assert residual_extra(four, filter_growth=1.0, **kw) == 0


def test_building_leaves_batchnorm_statistics_untouched() -> None:
    model = cnn(DIGITS)
    assert model.training
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2
    for m in norms:
        assert m.num_batches_tracked is not None and m.num_batches_tracked.item() == 0
        assert m.running_mean is not None and not m.running_mean.any()


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_every_option_gives_logits(name: str, layers: int, bidirectional: bool) -> None:
    model = rnn(name, num_layers=layers, bidirectional=bidirectional, hidden_size=8, dropout=0.2)
    assert isinstance(model.rnn, nn.LSTM if name == "lstm" else nn.GRU)
    x = torch.randn(4, 11, 3)  # (B, T, F)
    lengths = torch.tensor([11, 5, 1, 8])
    assert model(x, lengths).shape == (4, 20)
    assert model(x).shape == (4, 20)


def test_rnn_reads_digits_as_rows() -> None:
    info = Info("digits", 10, True, features=8, max_len=8)
    assert rnn("lstm", info)(torch.randn(2, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_rnn_parameters_grow_with_size_and_bidirectional_doubles(name: str) -> None:
    base = rnn(name, num_layers=1, hidden_size=16)
    assert count_parameters(rnn(name, num_layers=1, hidden_size=32)) > count_parameters(base)
    assert count_parameters(rnn(name, num_layers=2, hidden_size=16)) > count_parameters(base)
    bi = rnn(name, num_layers=1, hidden_size=16, bidirectional=True)
    assert count_parameters(bi.rnn) == 2 * count_parameters(base.rnn)
    assert count_parameters(bi) == pytest.approx(2 * count_parameters(base), rel=0.05)


def test_rnn_parameter_count_by_hand() -> None:
    # One GRU layer: 3 gates, each W_ih (H x F) + W_hh (H x H) + two biases; then the head.
    f, h = 3, 16
    gru = 3 * (h * f + h * h + 2 * h)
    assert count_parameters(rnn("gru", num_layers=1, hidden_size=h)) == gru + h * 20 + 20
    assert count_parameters(rnn("lstm", num_layers=1, hidden_size=h)) == 4 * gru // 3 + h * 20 + 20


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_rnn_dropout_works_with_one_layer(name: str) -> None:
    x, lengths = torch.randn(8, 10, 3), torch.full((8,), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nn.GRU(dropout>0, num_layers=1) would warn
        model = rnn(name, num_layers=1, dropout=0.5)
    assert model.rnn.dropout == 0.0
    model.train()
    assert not torch.equal(model(x, lengths), model(x, lengths))
    model.eval()
    assert torch.equal(model(x, lengths), model(x, lengths))
    still = rnn(name, num_layers=1, dropout=0.0).train()
    assert torch.equal(still(x, lengths), still(x, lengths))
    assert rnn(name, num_layers=2, dropout=0.5).rnn.dropout == 0.5


def test_cnn_dropout_is_active_only_in_training() -> None:
    # Without batchnorm, so that only dropout can make two training forwards differ.
    model, x = cnn(DIGITS, dropout=0.5, batchnorm=False), images(DIGITS)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    still = cnn(DIGITS, dropout=0.0, batchnorm=False)
    assert torch.equal(still(x), still(x))


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_never_reads_the_padding(name: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    model = rnn(name, num_layers=2, bidirectional=bidirectional, hidden_size=8, dropout=0.3)
    model.eval()
    lengths = torch.tensor([3, 7, 5, 1])
    x = torch.randn(4, 7, 3)
    real = (torch.arange(7)[None, :] < lengths[:, None])[..., None]  # (B, T, 1): real steps
    x = x * real  # zero padding, as the data side delivers it
    expected = model(x, lengths)
    # Longer zero padding, then garbage in every padded step: the logits must not move.
    longer = torch.cat([x, torch.zeros(4, 9, 3)], dim=1)  # (B, 16, F)
    real = (torch.arange(16)[None, :] < lengths[:, None])[..., None]  # (B, 16, 1)
    garbage = torch.where(real, longer, 100 * torch.randn(4, 16, 3))
    torch.testing.assert_close(model(longer, lengths), expected)
    torch.testing.assert_close(model(garbage, lengths), expected)
    # Each row alone and unpadded gives the same logits: nothing leaks across the batch.
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(model(x[i : i + 1, :n]), expected[i : i + 1])
    # Without lengths the padding does reach the output: the checks above can fail.
    assert not torch.allclose(model(garbage), expected)


def test_rnn_full_lengths_equal_no_lengths() -> None:
    model = rnn("lstm", bidirectional=True).eval()
    x = torch.randn(3, 6, 3)
    torch.testing.assert_close(model(x, torch.full((3,), 6)), model(x))


def test_unknown_model_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="cnn, mlp, cnn1d, lstm, gru"):
        build_model(Config(model="transformer"), DIGITS)
    assert list(MODELS) == ["cnn", "mlp", "cnn1d", "lstm", "gru"]


def test_model_and_data_kind_must_match() -> None:
    with pytest.raises(ValueError, match="needs images"):
        build_model(Config(model="cnn", dataset="gestures"), GESTURES)
    with pytest.raises(ValueError, match="needs sequences"):
        build_model(Config(model="gru"), DIGITS)
    with pytest.raises(ValueError, match="needs sequences"):
        build_model(Config(model="cnn1d"), DIGITS)


@pytest.mark.parametrize("name", ["cnn", "mlp", "cnn1d", "lstm", "gru"])
def test_models_fit_a_tiny_batch(name: str) -> None:
    # A few Adam steps on one fixed batch must cut the loss: gradients reach every part.
    torch.manual_seed(0)
    if name in ("cnn", "mlp"):
        model: nn.Module = build_model(Config(model=name), DIGITS)
        x, lengths = images(DIGITS, 16), None
    else:
        model = build_model(Config(model=name, dataset="gestures"), GESTURES)
        x, lengths = torch.randn(16, 12, 3), torch.randint(1, 13, (16,))
    y = torch.randint(0, 10, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x, lengths), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is not None for p in model.parameters())

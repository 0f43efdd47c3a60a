"""The configurable parts: block types, squeeze-excite, head depth, the MLP, residual RNNs.

Each option's parameter count is checked against an independent count written out here
from the layer definitions (weights + biases), not against the model's own arithmetic.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from models import MODELS, RNN, CNN1d, build_model, count_parameters
from models.blocks import ConvBlock, Inception, SqueezeExcite
from models.mlp import SEQUENCE_BINS
from sweepmap.config import Config

from .test_models import (
    DIGITS,
    FASHION,
    GESTURES,
    Info,
    images,
    one_thread,  # noqa: F401  (autouse: one torch thread)
)

SEQ_DIGITS = Info("digits", 10, True, features=8, max_len=8)


def params(model: str, info: Info, **kw: Any) -> int:
    return count_parameters(build_model(Config(model=model, dataset=info.name, **kw), info))


def conv(i: int, o: int, k: int, dims: int) -> int:
    return i * o * k**dims + o


def inception(i: int, o: int, k: int, dims: int) -> int:
    w = [o // 4 + (b < o % 4) for b in range(4)]
    one = conv(i, w[0], 1, dims)
    narrow = conv(i, w[1], 1, dims) + conv(w[1], w[1], k, dims)
    wide = conv(i, w[2], 1, dims) + 2 * conv(w[2], w[2], k, dims)
    return one + narrow + wide + conv(i, w[3], 1, dims)


def se(c: int, r: int) -> int:
    h = max(1, c // r)
    return c * h + h + h * c + c


def channels(filters: int, blocks: int, growth: float = 2.0) -> list[int]:
    return [round(filters * growth**i) for i in range(blocks)]


CONV_CASES = [("cnn", DIGITS, 1, 2), ("cnn", FASHION, 1, 2), ("cnn1d", GESTURES, 3, 1),
              ("cnn1d", SEQ_DIGITS, 8, 1)]  # fmt: skip


@pytest.mark.parametrize(("model", "info", "in_ch", "dims"), CONV_CASES)
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_inception_block_count_by_hand(
    model: str, info: Info, in_ch: int, dims: int, kernel: int
) -> None:
    kw = {"num_blocks": 2, "filters": 6, "kernel_size": kernel, "batchnorm": False}
    chans = channels(6, 2)
    body = inception(in_ch, chans[0], kernel, dims) + inception(chans[0], chans[1], kernel, dims)
    head = chans[-1] * info.num_classes + info.num_classes
    assert params(model, info, block="inception", **kw) == body + head
    plain = conv(in_ch, chans[0], kernel, dims) + conv(chans[0], chans[1], kernel, dims)
    assert params(model, info, **kw) == plain + head


@pytest.mark.parametrize(("model", "info", "in_ch", "dims"), CONV_CASES)
def test_block_residual_is_plain_with_the_skip(
    model: str, info: Info, in_ch: int, dims: int
) -> None:
    # The older key and the block type build one and the same model.
    kw: dict[str, Any] = {"num_blocks": 3, "filters": 4}
    a = build_model(Config(model=model, dataset=info.name, block="residual", **kw), info)
    b = build_model(Config(model=model, dataset=info.name, residual=True, **kw), info)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [
        (k, v.shape) for k, v in b.state_dict().items()
    ]
    skips = conv(in_ch, 4, 1, dims) + conv(4, 8, 1, dims) + conv(8, 16, 1, dims)
    assert count_parameters(a) - params(model, info, **kw) == skips
    # On inception blocks the skip adds the same projections.
    extra = params(model, info, block="inception", residual=True, **kw)
    assert extra - params(model, info, block="inception", **kw) == skips


@pytest.mark.parametrize(("model", "info", "in_ch", "dims"), CONV_CASES)
@pytest.mark.parametrize("block", ["plain", "residual", "inception"])
@pytest.mark.parametrize("ratio", [1, 4, 16])
def test_squeeze_excite_adds_its_gates(
    model: str, info: Info, in_ch: int, dims: int, block: str, ratio: int
) -> None:
    kw = {"num_blocks": 3, "filters": 8, "block": block}
    extra = params(model, info, squeeze_excite=ratio, **kw) - params(model, info, **kw)
    assert extra == sum(se(c, ratio) for c in channels(8, 3))


@pytest.mark.parametrize(("model", "info"), [("cnn", DIGITS), ("cnn1d", GESTURES),
                                             ("lstm", GESTURES), ("gru", SEQ_DIGITS)])  # fmt: skip
@pytest.mark.parametrize("layers", [1, 2, 4])
def test_head_layers_add_square_layers(model: str, info: Info, layers: int) -> None:
    kw: dict[str, Any] = {"filters": 8} if model.startswith("cnn") else {"hidden_size": 12}
    width = 16 if model.startswith("cnn") else 12  # the head's input: C_last or H
    extra = params(model, info, head_layers=layers, **kw) - params(model, info, **kw)
    assert extra == layers * (width * width + width)
    if not model.startswith("cnn"):  # a bidirectional RNN's head reads 2H
        bi = params(model, info, head_layers=layers, bidirectional=True, **kw)
        assert bi - params(model, info, bidirectional=True, **kw) == layers * (24 * 24 + 24)


@pytest.mark.parametrize(("info", "inputs"), [(DIGITS, 64), (FASHION, 784),
                                              (GESTURES, 3 * SEQUENCE_BINS)])  # fmt: skip
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("batchnorm", [True, False])
def test_mlp_count_by_hand(info: Info, inputs: int, layers: int, batchnorm: bool) -> None:
    h, k = 20, info.num_classes
    bn = 2 * h if batchnorm else 0
    expected = (inputs * h + h + bn) + (layers - 1) * (h * h + h + bn) + h * k + k
    assert params("mlp", info, hidden_size=h, num_layers=layers, batchnorm=batchnorm) == expected
    assert params("mlp", info, hidden_size=2 * h, num_layers=layers) > expected


def test_mlp_batchnorm_and_dropout_are_layers_of_it() -> None:
    model = build_model(Config(model="mlp", dropout=0.5, num_layers=3), DIGITS)
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(nn.BatchNorm1d) == 3 and kinds.count(nn.Dropout) == 3
    x = images(DIGITS, 8)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x)) and model(x).shape == (8, 10)


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_rnn_residual_adds_no_parameters(name: str, bidirectional: bool, layers: int) -> None:
    # Identity skips between layers of one width: the same weights, one module per layer.
    kw: dict[str, Any] = {"hidden_size": 10, "num_layers": layers, "bidirectional": bidirectional}
    model = build_model(Config(model=name, dataset="gestures", residual=True, **kw), GESTURES)
    assert isinstance(model.rnn, nn.ModuleList) and len(model.rnn) == layers
    assert count_parameters(model) == params(name, GESTURES, **kw)
    x, lengths = torch.randn(4, 9, 3), torch.tensor([9, 2, 5, 1])
    assert model(x, lengths).shape == (4, 20)


def test_rnn_residual_is_a_skip_around_each_later_layer() -> None:
    # Zero every weight of layer 2: it outputs 0 (GRU: h stays 0 from h0 = 0 when the update
    # gate is 1/2 and the candidate is tanh(0) = 0), so the stream is layer 1's output alone.
    model = build_model(
        Config(model="gru", dataset="gestures", residual=True, num_layers=2), GESTURES
    ).eval()
    one = build_model(Config(model="gru", dataset="gestures", num_layers=1), GESTURES).eval()
    assert isinstance(model, RNN) and isinstance(one, RNN) and isinstance(model.rnn, nn.ModuleList)
    with torch.no_grad():
        for p in model.rnn[1].parameters():
            p.zero_()
        one.rnn.load_state_dict(model.rnn[0].state_dict())
        one.head.load_state_dict(model.head.state_dict())
    x, lengths = torch.randn(5, 8, 3), torch.tensor([8, 3, 1, 6, 8])
    torch.testing.assert_close(model(x, lengths), one(x, lengths))


def test_blocks_keep_the_spatial_shape() -> None:
    from models.blocks import BlockSpec

    for dims, x in ((2, torch.randn(2, 3, 7, 5)), (1, torch.randn(2, 3, 11))):
        spec = BlockSpec(dims=dims, kernel_size=5, inception=True, squeeze_excite=2, residual=True)
        block = ConvBlock(spec, 3, 9)
        assert isinstance(block.conv, Inception) and isinstance(block.se, SqueezeExcite)
        assert block(x).shape == (2, 9, *x.shape[2:])


def test_cnn1d_on_digits_reads_rows_as_steps() -> None:
    model = build_model(Config(model="cnn1d", kernel_size=7), SEQ_DIGITS)
    assert isinstance(model, CNN1d)
    assert model(torch.randn(3, 8, 8), torch.full((3,), 8)).shape == (3, 10)


def test_every_model_reads_the_layout_the_config_table_gives() -> None:
    """The config's layout table decides how the data are loaded: a model missing from it, or
    one that reads another layout than the table says, would silently get the wrong tensors."""
    from sweepmap.config import INPUT_LAYOUT, MODELS_FOR, layout_of

    assert set(MODELS) == set(INPUT_LAYOUT)
    for name, layouts in INPUT_LAYOUT.items():
        for info in (DIGITS, GESTURES):
            layout = layout_of(name, info.name)
            cfg = Config(model=name, dataset=info.name)
            assert cfg.as_sequence == (layout == "sequence")
            assert (name in MODELS_FOR[info.name]) == (layout is not None)
            if layout is None:
                with pytest.raises(ValueError, match="needs"):
                    build_model(cfg, info)
                continue
            data = SEQ_DIGITS if info is DIGITS and layout == "sequence" else info
            build_model(cfg, data)  # the layout the table gives is one the model reads
            for wrong in {"image", "sequence"} - set(layouts):
                other = SEQ_DIGITS if wrong == "sequence" else DIGITS
                with pytest.raises(ValueError, match="needs"):
                    build_model(Config(model=name), other)
    # The MLP flattens digits (the image layout comes first) and pools gestures' steps.
    assert layout_of("mlp", "digits") == "image" and layout_of("mlp", "gestures") == "sequence"
    assert layout_of("cnn1d", "digits") == "sequence" and layout_of("cnn", "gestures") is None


@pytest.mark.parametrize(
    ("kw", "info"),
    [
        ({"model": "cnn", "block": "inception", "squeeze_excite": 2, "residual": True}, DIGITS),
        ({"model": "mlp"}, DIGITS),
        ({"model": "mlp"}, GESTURES),
        ({"model": "cnn1d", "block": "inception", "squeeze_excite": 2, "pooling": "avg"}, GESTURES),
        ({"model": "gru", "residual": True, "head_layers": 1}, GESTURES),
        ({"model": "lstm", "bidirectional": True, "residual": True}, GESTURES),
    ],
)
def test_models_run_under_bf16_autocast(kw: dict[str, Any], info: Info) -> None:
    # The loop trains with bf16 autocast on CUDA. CPU autocast also runs convs and linears in
    # bf16 beside fp32 tensors, so a dtype clash in the masking (index_put, masked_fill, the
    # einsum of bin_means) shows here without a GPU.
    model = build_model(Config(dataset=info.name, **kw), info)
    if info.is_sequence:
        x, lengths = torch.randn(4, 11, 3), torch.tensor([11, 3, 7, 1])
    else:
        x, lengths = images(info, 4), None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, lengths)
    out.float().sum().backward()
    assert out.shape == (4, info.num_classes) and torch.isfinite(out.float()).all()

"""The k CNNs of a stack as one grouped network, channels-last, without vmap.

Under vmap a stack of the digits CNN is no faster than its runs one at a time: vmap's conv rule
already groups the k convs, but max pooling and batchnorm move the replicate axis back in front
and run NCHW kernels on (k * B, C, 8, 8), whose cost is per element, as alone. Here the k runs'
channels sit side by side, (B, k * C, H, W) in channels-last memory: the convs are one grouped
conv (`groups=k`: group g sees run g's channels only), batchnorm and pooling are per channel and
so per run as they are, and each of their channels-last kernels sweeps all k * C channels at
once. The head is a batched matmul over the runs, (k, B, C) @ (k, C, O).

For `models.cnn.CNN` with plain blocks (with or without the skip) and no squeeze-excite; the
stack runs other CNNs through vmap (`grouped_cnn`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.blocks import ConvBlock
from models.cnn import CNN


def grouped_cnn(model: nn.Module) -> bool:
    """Whether `grouped_forward` runs this model."""
    if not isinstance(model, CNN):
        return False
    blocks = [m for m in model.features if isinstance(m, ConvBlock)]
    return all(isinstance(b.conv, nn.Conv2d) and b.se is None for b in blocks)


def to_groups(x: Tensor, k: int, shared: bool) -> Tensor:
    """Images (k, B, C, H, W), or (B, C, H, W) shared by every run -> (B, k * C, H, W),
    channels-last: run g's channels at g * C .. (g + 1) * C."""
    if shared:
        x = x.unsqueeze(0).expand(k, *x.shape)
    _, b, c, h, w = x.shape
    return x.transpose(0, 1).reshape(b, k * c, h, w).contiguous(memory_format=torch.channels_last)


def grouped_forward(
    model: CNN,
    params: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    x: Tensor,
    shared: bool,
) -> Tensor:
    """Logits (k, B, classes) of the k runs whose stacked parameters are `params` (k, ...).

    `model` gives the structure (its own tensors are not read: it may be on the meta device);
    its training flag decides dropout and batchnorm, whose running statistics are updated in
    `buffers` in place, as the modules would update their own.
    """
    k = len(next(iter(params.values())))
    h = to_groups(x, k, shared)
    relu_due = False  # a block's ReLU, put off until after its max pooling
    for i, module in enumerate(model.features):
        if isinstance(module, ConvBlock):
            h = _block(module, f"features.{i}.", h, k, params, buffers, model.training)
            relu_due = True
        elif isinstance(module, nn.MaxPool2d) and relu_due:
            # Max pooling commutes with ReLU, gradients included, bit for bit: a window with a
            # positive maximum picks the same element either way, any other gives 0 and a
            # zero gradient either way. After the pool, the ReLU and its backward touch a
            # quarter of the elements: 1.07x the stacked step, 1.04x a cell (bench/results.md).
            h = F.relu(module(h))
            relu_due = False
        else:  # pooling, Dropout2d, Identity: per channel, hence per run
            h = F.relu(h) if relu_due else h
            h = module(h)
            relu_due = False
    h = F.relu(h) if relu_due else h
    h = h.mean(dim=(2, 3))  # (B, k * C): the CNN's global average pool
    h = h.view(len(h), k, -1).transpose(0, 1)  # (k, B, C)
    for j, layer in enumerate(model.head):
        if isinstance(layer, nn.Linear):
            w, b = params[f"head.{j}.weight"], params[f"head.{j}.bias"]  # (k, O, C), (k, O)
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # (k, B, O)
        else:  # Dropout, ReLU: elementwise
            h = layer(h)
    return h


def _conv(conv: nn.Conv2d, name: str, h: Tensor, k: int, params: Mapping[str, Tensor]) -> Tensor:
    weight = params[f"{name}.weight"].flatten(0, 1)  # (k, O, C, kh, kw) -> (k * O, C, kh, kw)
    bias = params.get(f"{name}.bias")
    return F.conv2d(
        h,
        weight,
        None if bias is None else bias.flatten(),
        conv.stride,
        conv.padding,  # "same" or a tuple, as the module has it
        conv.dilation,
        conv.groups * k,
    )


def _block(
    block: ConvBlock,
    prefix: str,
    h: Tensor,
    k: int,
    params: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    training: bool,
) -> Tensor:
    """ConvBlock.forward on grouped channels, up to its ReLU: conv -> [batchnorm] -> (+ skip)."""
    assert isinstance(block.conv, nn.Conv2d)
    out = _conv(block.conv, f"{prefix}conv", h, k, params)
    if block.norm is not None:
        bn = block.norm.bn
        assert isinstance(bn, nn.BatchNorm2d) and bn.momentum is not None
        name = f"{prefix}norm.bn"
        if training:  # as BatchNorm2d.forward counts; read only with momentum=None
            buffers[f"{name}.num_batches_tracked"].add_(1)
        out = F.batch_norm(
            out,
            buffers[f"{name}.running_mean"].view(-1),  # (k * C,) views: updated in place
            buffers[f"{name}.running_var"].view(-1),
            params[f"{name}.weight"].flatten(),
            params[f"{name}.bias"].flatten(),
            training,
            bn.momentum,
            bn.eps,
        )
    if isinstance(block.skip, nn.Conv2d):
        out = out + _conv(block.skip, f"{prefix}skip", h, k, params)
    elif block.skip is not None:  # the identity
        out = out + h
    return out  # zero_pad without a mask: images have no padding

"""nn.GRU and nn.LSTM written as tensor ops per time step, which vmap can batch.

torch 2.13's vmap has no batching rule for aten::gru.input or aten::lstm.input ("Batching rule
not implemented ... We could not generate a fallback"), so a stacked model swaps its RNN
modules for these. They keep nn.GRU's / nn.LSTM's parameter names (weight_ih_l0, ...), so the
stacked parameters of the real modules drive them through `functional_call`, and they compute
what torch's CPU cells compute (aten/src/ATen/native/RNN.cpp: the input projection of every
step at once, then per step `h' = (h - n) * z + n` for the GRU, `c' = f * c + i * g`,
`h' = o * tanh(c')` for the LSTM), in float up to summation order.

Only what `models.rnn.RNN` runs unpacked: batch_first, one direction, no dropout between
layers (`sweepmap.stack.can_stack` refuses the rest).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LoopRNN(nn.Module):
    """An nn.GRU or nn.LSTM (batch_first, unidirectional) as a loop over steps.

    forward(x (B, T, F)) -> (out (B, T, H), h_n (L, B, H)) for a GRU and
    (out, (h_n, c_n)) for an LSTM, as the module it replaces returns them.
    """

    def __init__(self, rnn: nn.GRU | nn.LSTM) -> None:
        super().__init__()
        assert rnn.batch_first and not rnn.bidirectional and rnn.bias
        self.lstm = isinstance(rnn, nn.LSTM)
        self.num_layers = rnn.num_layers
        self.hidden_size = rnn.hidden_size
        for name, param in rnn.named_parameters():  # weight_ih_l0, weight_hh_l0, bias_..
            self.register_parameter(name, nn.Parameter(param.detach().clone()))

    def _weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        w_ih, w_hh, b_ih, b_hh = (getattr(self, f"{n}_l{layer}") for n in names)
        return w_ih, w_hh, b_ih, b_hh

    def forward(self, x: Tensor, hx: None = None) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
        assert hx is None, "a zero initial state only, as models.rnn passes"
        h_last: list[Tensor] = []
        c_last: list[Tensor] = []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._weights(layer)
            gates_x = F.linear(x, w_ih, b_ih)  # (B, T, G * H): every step's input share at once
            if self.lstm:
                x, h, c = _lstm_layer(gates_x, w_hh, b_hh, self.hidden_size)
                c_last.append(c)
            else:
                x, h = _gru_layer(gates_x, w_hh, b_hh, self.hidden_size)
            h_last.append(h)
        h_n = torch.stack(h_last)  # (L, B, H)
        return (x, (h_n, torch.stack(c_last))) if self.lstm else (x, h_n)


def _gru_layer(gates_x: Tensor, w_hh: Tensor, b_hh: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """gates_x (B, T, 3H), rows r, z, n as in nn.GRU -> (out (B, T, H), h (B, H)).

    The steps come from split and unbind, not indexing: the backward of `gates_x[:, t]` would
    allocate a zero (B, T, 3H) for every step; theirs is one concatenation.
    """
    rz_x, n_x = gates_x.split([2 * size, size], dim=2)
    h = gates_x.new_zeros(gates_x.shape[0], size)
    outs = []
    for rz_xt, n_xt in zip(rz_x.unbind(1), n_x.unbind(1), strict=True):
        rz_h, n_h = F.linear(h, w_hh, b_hh).split([2 * size, size], dim=1)  # (B, 2H), (B, H)
        r, z = torch.sigmoid(rz_xt + rz_h).chunk(2, dim=1)  # reset and update gates
        n = torch.tanh(n_xt + r * n_h)
        h = (h - n) * z + n
        outs.append(h)
    return torch.stack(outs, dim=1), h


def _lstm_layer(
    gates_x: Tensor, w_hh: Tensor, b_hh: Tensor, size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """gates_x (B, T, 4H), rows i, f, g, o as in nn.LSTM -> (out (B, T, H), h, c (B, H))."""
    h = gates_x.new_zeros(gates_x.shape[0], size)
    c = h
    outs = []
    for gates_xt in gates_x.unbind(1):
        i, f, g, o = (gates_xt + F.linear(h, w_hh, b_hh)).chunk(4, dim=1)  # (B, H) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, dim=1), h, c


def loop_rnns(module: nn.Module) -> nn.Module:
    """`module` with every nn.GRU / nn.LSTM inside replaced by a LoopRNN (in place)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.GRU | nn.LSTM):
            setattr(module, name, LoopRNN(child))
        else:
            loop_rnns(child)
    return module

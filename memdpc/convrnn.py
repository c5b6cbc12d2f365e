"""Convolutional GRU aggregator (spec §3.2).

The cell is registered twice, as `ConvGRUCell_00` and as `cell_list[0]` (the same module), because the original did
so: its state_dict therefore carries both key spellings, and released checkpoints load only if both exist.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvGRUCell(nn.Module):
    """z = sigmoid(W_u [x, h]); r = sigmoid(W_r [x, h]); h~ = tanh(W_o [x, r * h]); h' = (1 - z) h + z h~."""

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.input_size, self.hidden_size, self.kernel_size = input_size, hidden_size, kernel_size
        self.reset_gate = nn.Conv2d(input_size + hidden_size, hidden_size, kernel_size, padding=padding)
        self.update_gate = nn.Conv2d(input_size + hidden_size, hidden_size, kernel_size, padding=padding)
        self.out_gate = nn.Conv2d(input_size + hidden_size, hidden_size, kernel_size, padding=padding)
        for gate in (self.reset_gate, self.update_gate, self.out_gate):
            nn.init.orthogonal_(gate.weight)
        for gate in (self.reset_gate, self.update_gate, self.out_gate):
            nn.init.constant_(gate.bias, 0.0)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        if h is None:  # zero state on the input's device and dtype (the original hard-coded .cuda())
            h = x.new_zeros(x.shape[0], self.hidden_size, *x.shape[2:])
        combined = torch.cat([x, h], dim=1)
        update = torch.sigmoid(self.update_gate(combined))
        reset = torch.sigmoid(self.reset_gate(combined))
        candidate = torch.tanh(self.out_gate(torch.cat([x, h * reset], dim=1)))
        return h * (1 - update) + candidate * update


class ConvGRU(nn.Module):
    """Stacked ConvGRU over [B, T, C, H, W]; dropout on every step's state (it is also the carried state).

    Returns (last layer's outputs [B, T, hidden, H, W], final states of every layer [B, num_layers, hidden, H, W]).
    An initial state is a per-layer sequence (tensor [num_layers, B, hidden, H, W] or list).
    """

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int, num_layers: int, dropout: float = 0.1):
        super().__init__()
        self.input_size, self.hidden_size, self.kernel_size = input_size, hidden_size, kernel_size
        self.num_layers = num_layers
        cells = []
        for i in range(num_layers):
            cell = ConvGRUCell(input_size if i == 0 else hidden_size, hidden_size, kernel_size)
            setattr(self, f"ConvGRUCell_{i:02d}", cell)
            cells.append(cell)
        self.cell_list = nn.ModuleList(cells)
        self.dropout_layer = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor, hidden_state=None) -> tuple[torch.Tensor, torch.Tensor]:
        seq_len = x.shape[1]
        if hidden_state is None:
            hidden_state = [None] * self.num_layers
        layer_input = x
        last_states = []
        for layer, cell in enumerate(self.cell_list):
            h = hidden_state[layer]
            outputs = []
            for t in range(seq_len):
                h = self.dropout_layer(cell(layer_input[:, t], h))
                outputs.append(h)
            layer_input = torch.stack(outputs, dim=1)
            last_states.append(h)
        return layer_input, torch.stack(last_states, dim=1)


GRU_ALIASES = ("ConvGRUCell_00.", "cell_list.0.")


def complete_gru_aliases(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the missing spelling of every ConvGRU key (`agg_f.ConvGRUCell_00.x` <-> `agg_f.cell_list.0.x`), so a state
    dict exported with only one of the two alias sets still loads strictly."""
    out = dict(state_dict)
    for key, value in state_dict.items():
        for this, other in (GRU_ALIASES, GRU_ALIASES[::-1]):
            if f".{this}" in key:
                twin = key.replace(f".{this}", f".{other}", 1)
                out.setdefault(twin, value)
    return out

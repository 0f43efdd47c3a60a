"""What a model needs to know about its data, without importing `data` (no import cycle).

`data.DataInfo` (a frozen dataclass) satisfies this protocol structurally; the members are
read-only properties so that frozen dataclasses match.
"""

from __future__ import annotations

from typing import Protocol


class ModelInputs(Protocol):
    @property
    def name(self) -> str: ...  # the dataset, for error messages

    @property
    def num_classes(self) -> int: ...

    @property
    def is_sequence(self) -> bool: ...  # (B, T, F) plus lengths, else images (B, C, H, W)

    @property
    def channels(self) -> int: ...  # images: C; sequences: 0

    @property
    def image_size(self) -> tuple[int, int]: ...  # images: (H, W); sequences: (0, 0)

    @property
    def features(self) -> int: ...  # sequences: F per step; images: 0

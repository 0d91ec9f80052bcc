"""A request's input parsed once into one tagged value, and the error for one input (no torch, no Flask)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Inputs:
    """What to embed: texts or token-id lists, and whether the request sent a single one."""

    kind: Literal["texts", "ids"]
    items: list  # list[str] for texts, list[list[int]] for ids
    single: bool  # one text or one id list was sent, so errors name 'input' rather than 'input[0]'


class InputError(ValueError):
    """One input cannot be embedded (raised below the API, which names it as input[index])."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index

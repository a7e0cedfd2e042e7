"""Name -> builder registries. Widgets and the CLI list these instead of hard-coding choices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """A named table of builders; registering a name twice is an error, a miss lists the valid names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            if name in self._items:
                raise ValueError(f"A {self.kind} is already registered under the name {name!r}.")
            self._items[name] = fn
            return fn

        return deco

    def get(self, name: str) -> F:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"Unknown {self.kind} {name!r}; available: {self.names()}.") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


BACKBONES: Registry = Registry("backbone")
"""Feature extractors: ``builder(pretrained: bool) -> nn.Module`` with ``.out_channels`` (4 ints)."""

METHODS: Registry = Registry("method")
"""Segmentation methods: ``builder() -> napari_wsss.methods.Method`` (train/load/predict by name)."""

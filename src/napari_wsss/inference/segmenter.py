"""The contract every method's trained model meets, and loading a model version by its card.

A method registers a :class:`MethodSpec` in ``models._registry.METHODS`` (see ``napari_wsss.methods``);
the GUI and CLI only ever call :func:`load_segmenter` and ``Segmenter.predict``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..events import Progress, StopFlag
from ..models._registry import METHODS
from ..models.card import ModelCard, load_card


class Prediction(NamedTuple):
    """Output of a segmenter for a batch of tiles.

    Attributes:
        class_map: (N, H, W) uint8, class-map convention (foreground 0..K-1, background K).
        probs: (N, K + 1, H, W) float32 in [0, 1], per-class scores in the same order (background last);
            ``probs.max(1)`` is the confidence the viewer shows.
    """

    class_map: np.ndarray
    probs: np.ndarray


class Segmenter(Protocol):
    """A loaded model version ready to predict."""

    card: ModelCard

    def predict(self, images: np.ndarray, batch_size: int = 8) -> Prediction:
        """images: (N, H, W, 3) uint8 RGB tiles of any size (fully convolutional)."""
        ...


TrainFn = Callable[..., Generator[Progress, None, Path]]
"""``train(data_dir, out_dir, *, should_stop=..., **options) -> Generator[Progress, None, model_dir]``."""


@dataclass(frozen=True)
class MethodSpec:
    """A segmentation method reachable by name from the GUI and CLI."""

    name: str
    title: str
    description: str
    load: Callable[[Path, ModelCard, Any], Segmenter]
    train: TrainFn | None = None
    # its ``train`` takes ``epoch_score=callable(segmenter) -> float`` (a live validation score per epoch)
    epoch_score: bool = False


def load_segmenter(model_dir: str | Path, device: Any = None) -> Segmenter:
    """Load a model version folder (``card.json`` + ``weights.pt``) with the method its card names.

    Raises:
        FileNotFoundError / ValueError: missing or damaged files, with what to do.
        KeyError: the card names a method this installation does not know.
    """
    from .. import methods  # noqa: F401  (fills the METHODS registry)
    from ..device import select_device

    model_dir = Path(model_dir)
    card = load_card(model_dir)
    spec: MethodSpec = METHODS.get(card.method)
    return spec.load(model_dir, card, select_device(device) if not hasattr(device, "type") else device)


def predict_stop_aware(segmenter: Segmenter, images: np.ndarray, batch_size: int = 8,
                       should_stop: StopFlag | None = None) -> Generator[Progress, None, Prediction]:
    """Predict tile batches as a generator (progress per batch, cancellable between batches)."""
    from ..events import Cancelled

    n = len(images)
    maps, probs = [], []
    for i in range(0, n, batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled("prediction cancelled")
        pred = segmenter.predict(images[i : i + batch_size], batch_size=batch_size)
        maps.append(pred.class_map)
        probs.append(pred.probs)
        yield Progress(min(n, i + batch_size), n, "segmenting tiles")
    return Prediction(np.concatenate(maps), np.concatenate(probs))

"""A Segmenter that Macenko-normalises each image before the model sees it (``--stain-normalise``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .segmenter import Prediction, Segmenter


class StainNormalisedSegmenter:
    """Wraps a loaded Segmenter: ``predict`` normalises each (H, W, 3) image towards ``reference`` (tiles
    with too little tissue pass unchanged); everything else is the wrapped segmenter's."""

    def __init__(self, segmenter: Segmenter, reference: dict[str, Any]) -> None:
        from ..ops.stain_norm import MacenkoNormaliser

        self.segmenter = segmenter
        self.card = segmenter.card
        self.normaliser = MacenkoNormaliser(reference)
        if hasattr(segmenter, "predict_scores"):  # else __getattr__ would hand out the unnormalised one
            self.predict_scores = self._predict_scores

    def _predict_scores(self, images: np.ndarray, background: np.ndarray | None = None) -> Any:
        # glass is judged on the normalised images, as ``predict`` does, so a precomputed ``background`` is unused
        return self.segmenter.predict_scores(self.normalise(images))

    def normalise(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> the same, each image in the reference's stain (or unchanged: glass)."""
        return np.stack([self.normaliser(np.asarray(im)) for im in images])

    def predict(self, images: np.ndarray, batch_size: int = 8) -> Prediction:
        return self.segmenter.predict(self.normalise(images), batch_size=batch_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.segmenter, name)


def stain_reference(card: Any, reference_image: str | Path | None = None) -> dict[str, Any]:
    """The Macenko reference: fitted on ``reference_image`` when given, else the card's (fitted on the training
    data when the version was trained).

    Raises:
        ValueError: no reference image and none in the card, or the image holds too little tissue.
    """
    from ..ops.stain_norm import fit_macenko_reference

    if reference_image is not None:
        from ..data.tiles import read_rgb

        ref = fit_macenko_reference([read_rgb(Path(reference_image))])
        if ref is None:
            raise ValueError(f"{reference_image}: too little tissue to fit a stain reference; give an image of "
                             "well-stained tissue from the training data.")
        return ref
    ref = (card.stain or {}).get("macenko")
    if not ref:
        raise ValueError(f"Model {card.name or ''} has no stain reference in its card (trained before "
                         "napari-wsss recorded one); give a reference image from its training data "
                         "(--stain-reference IMAGE) or retrain it.")
    return ref


def with_stain_normalisation(segmenter: Segmenter, reference_image: str | Path | None = None
                             ) -> StainNormalisedSegmenter:
    """``segmenter`` wrapped to normalise images towards :func:`stain_reference`."""
    return StainNormalisedSegmenter(segmenter, stain_reference(segmenter.card, reference_image))

"""Which tile next: the uncertain tile first, disagreement with tags counts, look-alikes are not proposed in a row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsss.events import run_to_end
from napari_wsss.tagging.next_tile import (
    entropy_uncertainty,
    margin_uncertainty,
    presence,
    rank_tiles,
    select_diverse,
    usefulness,
)


def _probs(peak: float, k: int = 5, hw: int = 8) -> np.ndarray:
    p = np.full((k, hw, hw), (1 - peak) / (k - 1), np.float32)
    p[0] = peak
    return p


def test_uncertainty_orders_sure_below_unsure() -> None:
    sure, unsure, flat = _probs(0.98), _probs(0.5), _probs(0.2)
    assert entropy_uncertainty(sure) < entropy_uncertainty(unsure) < entropy_uncertainty(flat)
    assert entropy_uncertainty(flat) == pytest.approx(1.0)
    assert margin_uncertainty(sure) < margin_uncertainty(unsure) < margin_uncertainty(flat)
    assert margin_uncertainty(flat) == pytest.approx(1.0)


def test_disagreement_with_the_tag_raises_the_score() -> None:
    cm = np.zeros((10, 10), np.uint8)  # all class 0 (of 4 foreground classes)
    cm[:5] = 4  # half glass
    assert presence(cm, 4).tolist() == [1, 0, 0, 0]
    p = _probs(0.9)
    agree = usefulness(p, cm, np.array([1, 0, 0, 0]), 4)
    differ = usefulness(p, cm, np.array([0, 1, 1, 0]), 4)
    assert differ == pytest.approx(agree + 0.75)  # 3 of 4 classes differ
    assert usefulness(p, cm, None, 4) == pytest.approx(agree)
    with pytest.raises(ValueError, match="Unknown uncertainty"):
        usefulness(p, cm, None, 4, kind="bald")


def test_the_clearly_uncertain_tile_ranks_first() -> None:
    rng = np.random.default_rng(0)
    scores = [0.1, 0.2, 0.95, 0.15, 0.3]
    feats = rng.normal(size=(5, 4))
    assert select_diverse(scores, feats)[0] == 2
    assert select_diverse(scores, feats, diversity=0.0) == [2, 4, 1, 3, 0]  # no diversity: a plain sort


def test_near_duplicates_are_not_adjacent() -> None:
    rng = np.random.default_rng(1)
    base_a, base_b, base_c = rng.normal(size=6), rng.normal(size=6) + 4, rng.normal(size=6) - 4
    # five near-identical, highly uncertain tiles (cluster A) and two other kinds a little less uncertain
    feats = np.stack([base_a + rng.normal(scale=0.01, size=6) for _ in range(5)]
                     + [base_b + rng.normal(scale=0.01, size=6) for _ in range(3)]
                     + [base_c + rng.normal(scale=0.01, size=6) for _ in range(3)])
    scores = [0.9, 0.89, 0.88, 0.87, 0.86] + [0.7, 0.69, 0.68] + [0.6, 0.59, 0.58]
    cluster = [0] * 5 + [1] * 3 + [2] * 3
    order = select_diverse(scores, feats, diversity=1.0)
    assert order[0] == 0
    assert sorted(order) == list(range(11))
    firsts = [cluster[i] for i in order[:3]]
    assert sorted(firsts) == [0, 1, 2]  # one of each kind before any second look-alike
    plain = select_diverse(scores, feats, diversity=0.0)
    assert [cluster[i] for i in plain[:5]] == [0] * 5  # without diversity, the look-alikes come in a row


class _FakeSegmenter:
    """A model sure about bright tiles and unsure about dark ones: the ranking must follow that."""

    class card:  # noqa: N801
        from napari_wsss.classes import LUAD_HISTOSEG as class_schema

    def predict(self, images: np.ndarray, batch_size: int = 8):  # noqa: ANN201
        from napari_wsss.inference.segmenter import Prediction

        peak = images.mean() / 255.0
        probs = np.stack([_probs(max(0.2, min(0.99, float(peak))), 5, images.shape[1])])
        return Prediction(probs.argmax(1).astype(np.uint8), probs)


def test_rank_tiles_predicts_each_tile_and_puts_the_uncertain_first() -> None:
    tiles = [np.full((16, 16, 3), v, np.uint8) for v in (250, 240, 60, 245)]
    order = run_to_end(rank_tiles(_FakeSegmenter(), list(range(4)), lambda i: tiles[i], batch_size=3))
    assert order[0] == 2 and sorted(order) == [0, 1, 2, 3]


def test_rank_tiles_job_with_a_trained_version(tile_folder: Path, tmp_path: Path) -> None:
    from napari_wsss.tagging.next_tile import rank_tiles_job
    from napari_wsss.tagging.tiles import folder_tiles
    from napari_wsss.tagging.train import train_from_tags

    from .test_train import TINY, _tagged_project

    p = _tagged_project(tile_folder, tmp_path, 6)
    model = run_to_end(train_from_tags(p, "sshr", **TINY))
    tiles = folder_tiles(tile_folder)
    order = run_to_end(rank_tiles_job(model, tiles, p.source, p.tags()))
    assert sorted(order) == list(range(len(tiles)))

"""The card pieces every trainer shares: training metrics and the version card."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.training import common
from napari_wsss.training.mil import MILConfig


def test_train_metrics_rounds_and_sums_stages() -> None:
    assert common.train_metrics(12.345, [0.123456], 7) == {
        "train_seconds": 12.3, "epoch_losses": [0.1235], "n_train_tiles": 7}
    m = common.train_metrics({"a": 1.04, "b": 2.02}, [], 3, rounds=[{"kept": 1}])
    assert list(m) == ["train_seconds", "stage_seconds", "epoch_losses", "rounds", "n_train_tiles"]
    assert m["train_seconds"] == 3.1 and m["stage_seconds"] == {"a": 1.0, "b": 2.0}


def test_version_card_records_config_and_scale(tmp_path: Path) -> None:
    cfg = MILConfig(input_size=112, seed=4)
    card = common.version_card("mil", cfg, LUAD_HISTOSEG, 224, tmp_path, tmp_path / "v1", "cmd",
                               config={"epochs": 3, "extra": 1}, metrics={"n_train_tiles": 2})
    assert (card.method, card.backbone, card.input_size, card.seed, card.name) == ("mil", "small_cnn", 112, 4, "v1")
    assert card.config == {**cfg.to_dict(), "epochs": 3, "extra": 1, "tile_size": 224, "scale": 0.5}
    assert card.training_data == str(tmp_path.resolve()) and card.metrics == {"n_train_tiles": 2}
    assert card.class_schema.names == LUAD_HISTOSEG.names and card.command == "cmd"


def test_version_card_records_the_training_stain(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = MILConfig(hed_scale=0.05, hed_shift=0.02)
    card = common.version_card("mil", cfg, LUAD_HISTOSEG, 64, tiny_dataset, tmp_path / "v1", "cmd")
    assert card.config["hed_scale"] == 0.05 and card.config["hed_shift"] == 0.02
    stats = card.stain["stats"]
    assert stats["n_images"] == 24 and all(0 < v < 3 for v in stats["mean"][:2])
    assert np.array(card.stain["macenko"]["HERef"]).shape == (3, 2)  # the stain-normalisation reference
    assert card.to_dict()["stain"] == card.stain  # saved with the card
    # a sample of the tiles describes them too (the card reads at most STAIN_SAMPLE tiles)
    few = common.training_stain(tiny_dataset, max_tiles=8)["stats"]
    assert few["n_images"] == 8 and np.allclose(few["mean"], stats["mean"], atol=0.1)
    assert common.training_stain(tmp_path / "empty") == {}

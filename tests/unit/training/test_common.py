"""The card pieces every trainer shares: training metrics and the version card."""

from __future__ import annotations

from pathlib import Path

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

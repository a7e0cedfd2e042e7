"""remap_version: a CAM model's class channels chosen per new class (the LUAD demo's TE as gland)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wsss.classes import LUAD_HISTOSEG, load_schema
from napari_wsss.cli import main
from napari_wsss.inference.segmenter import load_segmenter
from napari_wsss.models.card import ModelCard, load_card, save_model
from napari_wsss.models.remap import remap_version
from napari_wsss.models.sshr import SSHRNet

GLAS = load_schema("glas")


@pytest.fixture
def luad_model(tmp_path):
    torch.manual_seed(0)
    net = SSHRNet("small_cnn", 4, kernel_size=3)
    card = ModelCard(method="sshr", backbone="small_cnn", schema=LUAD_HISTOSEG.to_dict(), input_size=64,
                     config={"kernel_size": 3, "hfrm": True, "threshold": 0.0})
    return save_model(tmp_path / "luad", net.state_dict(), card)


def test_new_classes_take_the_chosen_channels(luad_model, tmp_path):
    out = remap_version(luad_model, tmp_path / "glas", GLAS, {"gland": "TE", "non-gland": "TAS"})
    card = load_card(out)
    assert card.class_schema.names == GLAS.names and card.parent == "luad" and "gland <- TE" in card.training_data
    img = np.random.default_rng(0).integers(60, 200, (1, 64, 64, 3), dtype=np.uint8)
    old = load_segmenter(luad_model, "cpu").fused_cams(img)[0]
    new = load_segmenter(out, "cpu").fused_cams(img)[0]
    assert new.shape[1] == 2
    assert torch.allclose(new[:, 0], old[:, 0], atol=1e-5) and torch.allclose(new[:, 1], old[:, 3], atol=1e-5)


def test_cli_and_clear_errors(luad_model, tmp_path, capsys):
    assert main(["remap", "--model", str(luad_model), "--schema", "glas", "--map", "gland=TE", "--map",
                 "non-gland=TAS", "--out", str(tmp_path / "g")]) == 0
    assert load_card(tmp_path / "g").class_schema.name == "colon-gland"
    assert main(["remap", "--model", str(luad_model), "--schema", "glas", "--map", "gland=TE", "--out",
                 str(tmp_path / "h")]) == 2
    assert "No source class for ['non-gland']" in capsys.readouterr().err
    with pytest.raises(KeyError, match="Unknown class 'XX'"):
        remap_version(luad_model, tmp_path / "i", GLAS, {"gland": "XX", "non-gland": "TAS"})
    assert not (tmp_path / "h").exists() and not (tmp_path / "i").exists()

"""`predict` warns, in one line, when images are stained unlike the model's training data (card stain stats)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsss.cli import main
from napari_wsss.ops.stain import hed_to_rgb, rgb_to_hed, stain_statistics
from napari_wsss.resources import default_model_dir


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> tuple[Path, Path]:
    """Generated tiles (what the statistics describe) and the same tiles with 3x the haematoxylin."""
    from napari_wsss.data.synthetic import generate_tile

    root = tmp_path_factory.mktemp("stain")
    same, shifted = root / "same", root / "shifted"
    same.mkdir()
    shifted.mkdir()
    for i in range(4):
        img = generate_tile(100 + i, size=96).image
        Image.fromarray(img).save(same / f"t{i}.png")
        Image.fromarray(hed_to_rgb(rgb_to_hed(img, clip=False) * np.float32([3, 1, 1]))).save(shifted / f"t{i}.png")
    return same, shifted


@pytest.fixture(scope="module")
def model_with_stats(tmp_path_factory) -> Path:
    """The shipped model with the stain statistics of 16 generated tiles in its card."""
    from napari_wsss.data.synthetic import generate_tile

    model = tmp_path_factory.mktemp("m") / "with-stats"
    shutil.copytree(default_model_dir(), model)
    card = json.loads((model / "card.json").read_text())
    card["stain"] = {"stats": stain_statistics(generate_tile(s, size=96).image for s in range(16))}
    (model / "card.json").write_text(json.dumps(card))
    return model


def _predict(model: Path, folder: Path, out: Path, capsys) -> str:  # noqa: ANN001
    assert main(["predict", "--model", str(model), str(folder), "-o", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 4
    return capsys.readouterr().err


def test_in_range_tiles_give_no_warning(model_with_stats, tiles, tmp_path, capsys) -> None:  # noqa: ANN001
    assert "WARNING" not in _predict(model_with_stats, tiles[0], tmp_path / "a", capsys)


def test_shifted_stain_gives_one_warning_line(model_with_stats, tiles, tmp_path, capsys) -> None:  # noqa: ANN001
    err = _predict(model_with_stats, tiles[1], tmp_path / "b", capsys)
    lines = [ln for ln in err.splitlines() if "WARNING" in ln]
    assert len(lines) == 1, err
    assert "4 of 4 images are stained unlike" in lines[0] and "first t0.png: much" in lines[0] and "much more haematoxylin" in lines[0] and "fine-tune" in lines[0]


def test_models_without_statistics_skip_the_check(tiles, tmp_path, capsys) -> None:  # noqa: ANN001
    from napari_wsss.models.card import load_card

    assert load_card(default_model_dir()).stain == {}  # the shipped sshr-default predates the statistics
    assert "WARNING" not in _predict(default_model_dir(), tiles[1], tmp_path / "c", capsys)


def test_stain_normalise_needs_a_reference(tiles, tmp_path, capsys) -> None:  # noqa: ANN001
    assert main(["predict", "--model", str(default_model_dir()), str(tiles[1]), "-o", str(tmp_path / "x"),
                 "--stain-normalise"]) == 2
    assert "no stain reference" in capsys.readouterr().err and not (tmp_path / "x").exists()
    ref = sorted(tiles[0].glob("*.png"))[0]
    assert main(["predict", "--model", str(default_model_dir()), str(tiles[1]), "-o", str(tmp_path / "y"),
                 "--stain-normalise", "--stain-reference", str(ref)]) == 0
    assert len(list((tmp_path / "y").glob("*.png"))) == 4


def test_stain_normalise_with_the_card_reference_quiets_the_warning(model_with_stats, tiles, tmp_path,  # noqa: ANN001
                                                                    capsys) -> None:
    from napari_wsss.data.synthetic import generate_tile
    from napari_wsss.ops.stain_norm import fit_macenko_reference

    card = json.loads((model_with_stats / "card.json").read_text())
    card["stain"]["macenko"] = fit_macenko_reference(generate_tile(s, size=96).image for s in range(16))
    model = tmp_path / "with-ref"
    shutil.copytree(model_with_stats, model)
    (model / "card.json").write_text(json.dumps(card))
    assert main(["predict", "--model", str(model), str(tiles[1]), "-o", str(tmp_path / "n"),
                 "--stain-normalise"]) == 0
    assert "WARNING" not in capsys.readouterr().err  # judged on what the model sees: the normalised tiles
    assert len(list((tmp_path / "n").glob("*.png"))) == 4


def test_evaluate_with_stain_normalisation(tmp_path, capsys) -> None:  # noqa: ANN001
    from tests.unit.models._tiles import write_tiny_dataset

    data = write_tiny_dataset(tmp_path / "d", n_train=2, n_eval=3)
    ref = sorted((data / "training").glob("*.png"))[0]
    assert main(["evaluate", "--model", str(default_model_dir()), "--data", str(data), "--stain-normalise",
                 "--stain-reference", str(ref)]) == 0
    assert "mIoU" in capsys.readouterr().out

"""The shipped real-tissue model (models/sshr-glas): its card, and the `evaluate` interface on real GlaS images.

The real images are read from ../shared/data/glas (never copied into the repository); the tests that need them
skip, saying why, where that folder is absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from napari_wsss.cli import main
from napari_wsss.models.card import load_card, model_summary
from ..._glas import require_glas

REPO = Path(__file__).resolve().parents[3]
MODEL = REPO / "models" / "sshr-glas"
GLAS = REPO.parent / "shared" / "data" / "glas" / "train"
pytestmark = pytest.mark.skipif(not (MODEL / "card.json").is_file(), reason="models/sshr-glas not shipped")


def test_card_says_what_it_was_trained_on_and_how_it_scored():
    card = load_card(MODEL)
    assert card.class_schema.foreground_names == ["gland", "non-gland"]
    # image-level labels only: SSHR's maps distilled on whole images, gated by the patches' labels, then the
    # student's maps distilled the same way once more; each stage's validation score is on the card
    stages = card.metrics["stages"]
    assert [st["method"] for st in stages] == ["sshr", "ifkd", "ifkd"] and card.config["distil_rounds"] == 2
    assert card.method == "ifkd" and card.config["teacher_card"]["method"] == "ifkd"
    assert card.config["distil"]["distil_on"] == "images" and card.config["tta_flips"]
    assert stages[-1]["val"]["mIoU"] == card.metrics["val"]["mIoU"]
    assert card.metrics["val"]["mIoU"] > card.config["teacher_card"]["metrics"]["val"]["mIoU"] > stages[0]["val"]["mIoU"]
    assert card.metrics["train_seconds"] == pytest.approx(sum(st["train_seconds"] for st in stages), abs=0.2)
    assert "GlaS" in card.training_data and "image-level labels only" in card.training_data
    assert "Terms" in card.training_data and "scripts/train_glas_model.py" in card.command
    assert card.config["glass_min_size"] == 0  # white gland lumens are gland, not glass
    val = card.metrics["val"]
    assert val["n_tiles"] == 17 and set(val["IoU"]) == {"gland", "non-gland"}
    assert card.stain.get("stats")  # out-of-depth warnings have the training data's stain to compare with
    assert "DEMO" not in model_summary(card) and "colon-gland: gland, non-gland" in model_summary(card)
    assert (MODEL / "weights.pt").stat().st_size < 5e6


def test_evaluate_interface_on_real_glas_images(tmp_path):
    """`napari-wsss evaluate --model models/sshr-glas --data DIR --json OUT` on the GlaS layout (images/,
    masks/ with 255 = gland) writes the two-class mIoU as "mIoU"; three held-out images of the card's split."""
    names = ["train_14", "train_2", "train_57"]  # validation images: never trained on
    if not all((GLAS / "images" / f"{n}.png").is_file() for n in names):
        require_glas(*(GLAS / "images" / f"{n}.png" for n in names))
    for sub in ("images", "masks"):
        (tmp_path / "glas" / sub).mkdir(parents=True)
        for n in names:
            shutil.copy(GLAS / sub / f"{n}.png", tmp_path / "glas" / sub / f"{n}.png")
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--model", str(MODEL), "--data", str(tmp_path / "glas"), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["n_tiles"] == 3 and set(scores["IoU"]) == {"gland", "non-gland"}
    assert scores["mIoU"] == pytest.approx(sum(scores["IoU"].values()) / 2)
    # better than the trivial answers on real tissue (every pixel gland: mIoU about 0.25)
    assert scores["mIoU"] > 0.45

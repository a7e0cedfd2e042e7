"""``napari-wsss evaluate`` on GlaS-layout folders (images/ + masks/, 255 = gland, mixed sizes) with a glas-schema
model: the JSON's mIoU is the mean of gland and non-gland IoU with predicted glass counted as non-gland,
checked against a mIoU computed here from the raw masks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_wsss.classes import GLAS
from napari_wsss.cli import main
from .._glas import require_glas

GLAS_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "glas" / "train"


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def glas_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained SSHR (small CNN) with the glas schema: its predictions mix gland, non-gland and glass."""
    from napari_wsss.models.card import ModelCard, save_model
    from napari_wsss.models.sshr import SSHRNet

    torch.manual_seed(0)
    net = SSHRNet("small_cnn", GLAS.n_foreground, kernel_size=3, pretrained=False)
    card = ModelCard(method="sshr", backbone="small_cnn", schema=GLAS.to_dict(), input_size=64,
                     config={"kernel_size": 3, "scale": 0.5, "threshold": 0.2})
    return save_model(tmp_path_factory.mktemp("models") / "glas-untrained", net.state_dict(), card)


def independent_miou(model_dir: Path, folder: Path) -> tuple[float, dict[str, float]]:
    """Gland / non-gland IoU over all pixels of ``folder``, straight from the 0/255 masks."""
    from napari_wsss.inference.segmenter import load_segmenter

    seg = load_segmenter(model_dir, "cpu")
    inter, union = np.zeros(2), np.zeros(2)
    for img_path in sorted((folder / "images").glob("*.png")):
        pred = seg.predict(np.asarray(Image.open(img_path).convert("RGB"))).class_map[0]
        pred = np.where(pred == 2, 1, pred)  # predicted glass is non-gland
        gt = np.where(np.asarray(Image.open(folder / "masks" / img_path.name)) == 255, 0, 1)
        for c in (0, 1):
            inter[c] += np.sum((pred == c) & (gt == c))
            union[c] += np.sum((pred == c) | (gt == c))
    iou = inter / union
    return float(iou.mean()), {"gland": float(iou[0]), "non-gland": float(iou[1])}


def _synthetic_glas(folder: Path, rng: np.random.Generator) -> None:
    """Three images of two sizes: purple glands on pink stroma, a white glass corner (unannotated)."""
    for i, (h, w) in enumerate([(52, 77), (52, 77), (44, 58)]):
        gland = np.zeros((h, w), bool)
        gland[h // 5: h // 2, w // 6: w // 2] = True
        gland[2 * h // 3:, w // 2: 4 * w // 5] = True
        img = np.where(gland[..., None], [120, 50, 150], [225, 140, 185]).astype(np.float64)
        img[: h // 4, 3 * w // 4:] = 245  # glass: in GlaS masks it is 0 (not gland)
        img += rng.normal(0, 10, img.shape)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / "images" / f"train_{i + 1}.png")
        Image.fromarray((gland * 255).astype(np.uint8), mode="L").save(folder / "masks" / f"train_{i + 1}.png")


def test_evaluate_glas_layout_json_matches_independent_miou(glas_model: Path, tmp_path: Path,
                                                            rng: np.random.Generator, capsys) -> None:
    data = tmp_path / "glas"
    _synthetic_glas(data, rng)
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--model", str(glas_model), "--data", str(data), "--json", str(out),
                 "--device", "cpu", "--batch-size", "2"]) == 0
    scores = json.loads(out.read_text())
    miou, iou = independent_miou(glas_model, data)
    assert scores["n_tiles"] == 3
    assert scores["mIoU"] == pytest.approx(miou, abs=1e-9)
    assert scores["IoU"] == pytest.approx(iou, abs=1e-9) and set(scores["Dice"]) == {"gland", "non-gland"}
    assert 0 < iou["gland"] < 1 and 0 < iou["non-gland"] < 1  # a mixed prediction: the check can fail
    assert scores["scored_as"] == {"glass": "non-gland"} and scores["background_IoU"] is None
    assert "background scored as glass -> non-gland" in capsys.readouterr().out
    # the glass column of the confusion matrix is empty: every predicted glass pixel went to non-gland
    assert [row[2] for row in scores["confusion"]] == [0, 0, 0]


def test_evaluate_refuses_model_of_another_schema(tmp_path: Path, rng: np.random.Generator, capsys) -> None:
    from napari_wsss.classes import LUAD_HISTOSEG
    from napari_wsss.evaluation import evaluate_folder
    from napari_wsss.events import run_to_end
    from napari_wsss.inference.segmenter import load_segmenter
    from napari_wsss.models.card import ModelCard, save_model
    from napari_wsss.models.sshr import SSHRNet

    net = SSHRNet("small_cnn", 4, kernel_size=3, pretrained=False)
    model = save_model(tmp_path / "luad", net.state_dict(), ModelCard("sshr", "small_cnn", LUAD_HISTOSEG.to_dict(),
                                                                      config={"kernel_size": 3}))
    _synthetic_glas(tmp_path / "glas", rng)
    # a LUAD model reads GlaS 0/255 masks as class indices and names the bad value
    with pytest.raises(ValueError, match=r"\[255\]"):
        run_to_end(evaluate_folder(load_segmenter(model, "cpu"), tmp_path / "glas"))
    with pytest.raises(ValueError, match="predicts classes"):
        run_to_end(evaluate_folder(load_segmenter(model, "cpu"), tmp_path / "glas", schema=GLAS))


def test_evaluate_real_glas_images(glas_model: Path, tmp_path: Path) -> None:
    if not (GLAS_DIR / "images").is_dir():
        require_glas(GLAS_DIR / "images")
    data = tmp_path / "glas"
    for name in ("train_1", "train_12", "train_13"):  # 775x522, 574x433, 775x522: mixed sizes
        for sub in ("images", "masks"):
            (data / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(GLAS_DIR / sub / f"{name}.png", data / sub / f"{name}.png")
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--model", str(glas_model), "--data", str(data), "--json", str(out),
                 "--device", "cpu"]) == 0
    scores = json.loads(out.read_text())
    miou, iou = independent_miou(glas_model, data)
    assert scores["n_tiles"] == 3 and scores["mIoU"] == pytest.approx(miou, abs=1e-9)
    assert scores["IoU"] == pytest.approx(iou, abs=1e-9)

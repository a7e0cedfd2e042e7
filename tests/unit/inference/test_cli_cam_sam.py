"""`napari-wsss train --method cam_sam --sam-checkpoint ...` and `predict --method cam_sam` with a tiny SAM."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from napari_wsss.cli import main
from napari_wsss.models.sam import ENV_CHECKPOINT, ENV_MODEL_TYPE
from tests._sam import write_tiny_sam

from ..models._tiles import write_tiny_dataset


def test_cli_cam_sam(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NAPARI_WSSS_SAM_CACHE", str(tmp_path / "cache"))
    for var in (ENV_CHECKPOINT, ENV_MODEL_TYPE):  # set-then-delete: teardown undoes what `predict` sets
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    data = write_tiny_dataset(tmp_path / "data", n_train=6, n_eval=2)
    ckpt = write_tiny_sam(tmp_path / "sam" / "tiny.pth")
    model = tmp_path / "models" / "cli-cam-sam"
    common = ["--data", str(data), "--epochs", "1", "--batch-size", "6", "--input-size", "64", "--threads", "2",
              "--no-pretrained", "--no-eval", "--set", "rounds=1", "--set", "n_points=5"]
    # no SAM configured: a clear error, nothing trained
    assert main(["train", "--method", "cam_sam", "--out", str(model), *common]) == 2
    assert "--sam-checkpoint" in capsys.readouterr().err and not model.exists()
    assert main(["train", "--method", "cam_sam", "--out", str(model), *common, "--sam-checkpoint", str(ckpt),
                 "--sam-model-type", "vit_b"]) == 2
    assert "vit_b" in capsys.readouterr().err
    assert main(["train", "--method", "cam_sam", "--out", str(model), *common, "--sam-checkpoint", str(ckpt)]) == 0
    assert (model / "card.json").is_file()

    # predict with the SAM moved: --sam-checkpoint points at it
    moved = tmp_path / "moved.pth"
    os.replace(ckpt, moved)
    out = tmp_path / "pred"
    assert main(["predict", "--method", "cam_sam", "--model", str(model), str(data / "test" / "img"), "-o", str(out),
                 "--sam-checkpoint", str(moved)]) == 0
    masks = sorted(out.glob("*.png"))
    assert len(masks) == 2
    with Image.open(masks[0]) as im:
        assert im.mode == "P" and np.asarray(im).max() <= 4
    assert main(["predict", "--method", "sshr", "--model", str(model), str(data / "test" / "img"), "-o",
                 str(out)]) == 2
    assert "is a cam_sam model, not sshr" in capsys.readouterr().err

"""MIL -> IFKD as a training method: the CLI trains the teacher and distils it; the teacher's fused map is the
target; an existing teacher can be reused; the version names its teacher and loads as a segmentation network."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsss.events import run_to_end
from napari_wsss.inference.segmenter import load_segmenter
from napari_wsss.models.card import load_card
from napari_wsss.training import ifkd_loop

TINY = dict(epochs=1, batch_size=8, input_size=64, pretrained="none", device="cpu", num_threads=2)


def test_train_ifkd_from_the_cli_writes_teacher_and_student(tmp_path, tiny_dataset):
    from napari_wsss.cli import main
    from napari_wsss.commands.info import run as _info  # noqa: F401  (listed by info: checked below)

    out = tmp_path / "ifkd"
    rc = main(["train", "--method", "ifkd", "--data", str(tiny_dataset), "--out", str(out), "--epochs", "1",
               "--batch-size", "8", "--input-size", "64", "--no-pretrained", "--device", "cpu",
               "--threads", "2", "--set", "distil_epochs=2", "--set", "switch_every=1"])
    assert rc == 0
    teacher = tmp_path / "ifkd-teacher"
    card, tcard = load_card(out), load_card(teacher)
    assert card.method == "ifkd" and tcard.method == "mil"
    assert card.config["teacher"] == str(teacher) and card.config["teacher_name"] == "ifkd-teacher"
    distil = card.config["distil"]
    assert distil["student_started_from"] == "backbone's initial weights" and distil["n_tiles"] == 24
    assert set(card.metrics["stage_seconds"]) == {"teacher", "distillation"}
    val = card.metrics["validation"]
    assert val["n_tiles"] == 4 and len(val["history"]) == 2 and val["kept"] == "best"
    assert "mIoU" in card.metrics["val"]  # evaluated on the val split like every trainer
    seg = load_segmenter(out, "cpu")
    pred = seg.predict(np.full((2, 64, 64, 3), 120, np.uint8))
    assert pred.class_map.shape == (2, 64, 64)
    # a second run refuses to replace the teacher or the student
    with pytest.raises(FileExistsError):
        run_to_end(__import__("napari_wsss.training.ifkd_train", fromlist=["x"]).train_ifkd(
            tiny_dataset, out, **TINY))


def test_distils_the_teachers_fused_map_and_reuses_a_teacher(tmp_path, tiny_dataset, monkeypatch):
    from napari_wsss.inference.mil import MILSegmenter
    from napari_wsss.training.ifkd_train import train_ifkd
    from napari_wsss.training.mil import train_mil

    teacher = run_to_end(train_mil(tiny_dataset, tmp_path / "mil", evaluate=False, **TINY))
    seen = {}
    real = ifkd_loop.teacher_maps

    def spy(segmenter, tiles, k, should_stop, batch=8, desc="IFKD"):  # noqa: ANN001, ANN202
        maps = yield from real(segmenter, tiles, k, should_stop, batch, desc)
        seen.setdefault("first", (segmenter, tiles, maps))
        return maps

    monkeypatch.setattr(ifkd_loop, "teacher_maps", spy)
    out = run_to_end(train_ifkd(tiny_dataset, tmp_path / "student", teacher=str(teacher), distil_epochs=1,
                                evaluate=False, **TINY))
    assert not (tmp_path / "student-teacher").exists()  # the given teacher was used, none trained
    seg, tiles, maps = seen["first"]
    assert isinstance(seg, MILSegmenter)
    from napari_wsss.data.tiles import read_rgb

    # the target is the fused sigmoid map itself, not shares renormalised over the classes
    fused = seg.fused_maps(read_rgb(tiles[0].path)[None])[0].numpy()
    np.testing.assert_allclose(maps[0], fused, atol=1e-5)
    shares = seg.predict(read_rgb(tiles[0].path)[None]).probs[0, :-1]
    assert not np.allclose(maps[0], shares, atol=1e-3)
    # image labels zero the absent classes of each tile's target ("negatives against zeros")
    t = tiles[0]
    absent = np.flatnonzero(np.asarray(t.labels) == 0)
    assert absent.size and np.all(t.target[..., absent] == 0)
    assert load_card(out).config["teacher"] == str(teacher)
    import shutil

    from napari_wsss.models.card import save_card

    other = tmp_path / "sam-version"
    shutil.copytree(out, other)
    card = load_card(other)
    card.method = "cam_sam"
    save_card(other, card)
    with pytest.raises(ValueError, match="IFKD distils a mil, sshr, multistage, ifkd version"):
        run_to_end(train_ifkd(tiny_dataset, tmp_path / "again", teacher=str(other), **TINY))


def test_distils_an_sshr_teacher_on_whole_images_from_patches(tmp_path, rng, monkeypatch):
    """SSHR -> student on mosaics: the teacher predicts whole images, each patch's labels zero the classes its
    pixels cannot have, and the card keeps the teacher's scale and glass rule whatever the tiles' size."""
    from PIL import Image

    from napari_wsss.classes import GLAS
    from napari_wsss.export.patches import make_patches
    from napari_wsss.training.ifkd_train import train_ifkd
    from napari_wsss.training.sshr import train_sshr

    for i, (h, w) in enumerate([(64, 96), (96, 64), (64, 64)]):
        gland = np.zeros((h, w), bool)
        gland[8 : h // 2, 6 : w // 2] = True
        img = np.where(gland[..., None], [120, 50, 150], [225, 140, 185]) + rng.normal(0, 6, (h, w, 3))
        for sub, arr in (("images", np.clip(img, 0, 255).astype(np.uint8)), ("masks", (gland * 255).astype(np.uint8))):
            (tmp_path / "glas" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(tmp_path / "glas" / sub / f"img_{i}.png")
    data = run_to_end(make_patches(tmp_path / "glas", tmp_path / "set", GLAS, size=32, val_list=["img_2"]))
    tiny = {**TINY, "input_size": 16, "schema": "glas"}
    teacher = run_to_end(train_sshr(data, tmp_path / "sshr", evaluate=False, kernel_size=3, glass_min_size=0,
                                    **tiny))
    assert load_card(teacher).working_scale == 0.5  # 32-px patches seen at 16 px
    seen = {}
    real = ifkd_loop.teacher_maps

    def spy(segmenter, tiles, k, should_stop, batch=8, desc="IFKD"):  # noqa: ANN001, ANN202
        seen.setdefault("tiles", tiles)
        return (yield from real(segmenter, tiles, k, should_stop, batch, desc))

    monkeypatch.setattr(ifkd_loop, "teacher_maps", spy)
    out = run_to_end(train_ifkd(data, tmp_path / "student", teacher=str(teacher), distil_on="images",
                                distil_crop=24, distil_epochs=1, use_val=False, tta_flips=True, evaluate=False,
                                **{**tiny, "input_size": 64}))  # the teacher's input size and scale win
    card = load_card(out)
    assert card.working_scale == 0.5 and card.config["glass_min_size"] == 0 and card.config["tta_flips"]
    assert card.config["distil"]["distil_on"] == "images" and card.config["distil"]["n_tiles"] == 2
    assert card.config["distil"]["crop_size"] == 24
    tiles = seen["tiles"]
    assert sorted(t.key for t in tiles) == ["img_0", "img_1"]
    for t in tiles:  # whole images at the working scale, targets zero where the covering patch lacks the class
        assert t.labels.shape == (2, *t.image.shape[:2]) and t.image.shape[0] in (32, 48)
        forbidden = t.labels == 0
        assert forbidden.any() and (t.labels == 1).any()
        assert np.all(t.target.transpose(2, 0, 1)[forbidden] == 0)
    pred = load_segmenter(out, "cpu").predict(np.full((1, 64, 96, 3), 120, np.uint8))
    assert pred.class_map.shape == (1, 64, 96)

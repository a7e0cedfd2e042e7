import numpy as np
from PIL import Image

from napari_wsss.cli import main


def test_cli_train_evaluate_predict(tiny_dataset, tmp_path, capsys):
    model = tmp_path / "models" / "cli-sshr"
    rc = main(["train", "--method", "sshr", "--data", str(tiny_dataset), "--out", str(model), "--epochs", "1",
               "--batch-size", "8", "--input-size", "64", "--threads", "2", "--set", "kernel_size=3", "--no-eval"])
    assert rc == 0 and (model / "card.json").is_file()
    assert main(["evaluate", "--model", str(model), "--data", str(tiny_dataset)]) == 0
    assert "mIoU" in capsys.readouterr().out
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(tiny_dataset / "test" / "img"), "-o", str(out),
                 "--confidence"]) == 0
    masks = sorted(out.glob("*[0-9].png"))
    assert len(masks) == 4
    with Image.open(masks[0]) as im:
        assert im.mode == "P" and np.asarray(im).max() <= 4
    assert main(["train", "--method", "nope", "--data", str(tiny_dataset), "--out", str(tmp_path / "x")]) == 2
    assert "sshr" in capsys.readouterr().err


def test_cli_predict_slide_and_large_image(tiny_dataset, tmp_path, capsys):
    import zarr

    from tests.conftest import write_pyramid

    model = tmp_path / "m"
    assert main(["train", "--method", "sshr", "--data", str(tiny_dataset), "--out", str(model), "--epochs", "1",
                 "--batch-size", "8", "--input-size", "64", "--threads", "2", "--set", "kernel_size=3",
                 "--no-eval"]) == 0
    tiles = [np.asarray(Image.open(p)) for p in sorted((tiny_dataset / "test" / "img").glob("*.png"))]
    pair = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[1::-1], 1)], 0)
    big = np.tile(pair, (17, 17, 1))  # 2176 x 2176 tissue mosaic: above the one-pass limit
    slide = write_pyramid(tmp_path / "s.tif", np.ascontiguousarray(big[:1024, :1536]), n_levels=3, tile=256)
    out = tmp_path / "s.zarr"
    assert main(["predict", "--model", str(model), str(slide), "-o", str(out), "--batch-size", "4"]) == 0
    root = zarr.open_group(str(out), mode="r")
    assert root.attrs["complete"] is True and root["labels/0"].shape == (1024, 1536)
    assert np.asarray(root["labels/0"][:]).max() > 0
    # a second run onto the same zarr is refused without --overwrite (it deleted the earlier result before)
    assert main(["predict", "--model", str(model), str(slide), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert zarr.open_group(str(out), mode="r").attrs["complete"] is True
    # a large plain image is segmented in blended windows, not in one pass
    Image.fromarray(np.ascontiguousarray(big)).save(tmp_path / "big.png")
    assert main(["predict", "--model", str(model), str(tmp_path / "big.png"), "-o", str(tmp_path / "big_mask.png")]) == 0
    with Image.open(tmp_path / "big_mask.png") as im:
        assert im.size == (2176, 2176) and im.mode == "P"
    assert main(["predict", "--model", str(model), str(tmp_path / "missing.tif"), "-o", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_predict_never_writes_over_images_or_earlier_results(tiny_dataset, tmp_path, capsys):
    """-o equal to the input folder, an input image, or existing outputs without --overwrite are refused before
    anything is written (before: the masks replaced the H&E images)."""
    import shutil
    from pathlib import Path

    from napari_wsss.data.tiles import write_mask
    from napari_wsss.classes import LUAD_HISTOSEG

    folder = Path(shutil.copytree(tiny_dataset / "test" / "img", tmp_path / "tiles"))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    one = next(iter(sorted(folder.iterdir())))
    for out in (folder, one):
        src = folder if out == folder else one
        assert main(["predict", str(src), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert "your" in err and "images" in err and "-masks" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    res = tmp_path / "res"
    res.mkdir()
    earlier = write_mask(res / f"{one.stem}.png", np.zeros((4, 4), np.uint8), LUAD_HISTOSEG).read_bytes()
    assert main(["predict", str(folder), "-o", str(res)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (res / f"{one.stem}.png").read_bytes() == earlier
    assert len(list(res.iterdir())) == 1  # nothing half-written
    assert main(["predict", str(folder), "-o", str(res), "--overwrite"]) == 0
    assert (res / f"{one.stem}.png").read_bytes() != earlier


def test_cli_predict_routes_openslide_formats_to_the_slide_path(tmp_path, capsys):
    """An Aperio SVS (read by OpenSlide) is segmented as a slide with the shipped default model; the zarr records
    the slide's mpp, objective power and which backend read it. A scanner suffix that holds no slide gets one
    line naming the file and the supported formats."""
    import zarr

    from tests._slides import write_svs

    rng = np.random.default_rng(3)
    img = np.full((384, 512, 3), 240, np.uint8)
    img[64:320, 96:448] = rng.integers(90, 200, (256, 352, 3), dtype=np.uint8)  # tissue-ish centre, glass around
    slide = write_svs(tmp_path / "case.svs", img, n_levels=2, mpp=0.2527, mag=40)
    out = tmp_path / "case.zarr"
    assert main(["predict", str(slide), "-o", str(out), "--batch-size", "4"]) == 0
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert attrs["complete"] is True and attrs["shape"] == [384, 512]
    assert attrs["mpp"] == 0.2527 and attrs["objective"] == 40
    assert attrs["source"]["backend"] == "openslide" and attrs["source"]["vendor"] == "aperio"
    junk = tmp_path / "scan.ndpi"
    junk.write_bytes(b"II*\x00 not a slide")
    capsys.readouterr()
    assert main(["predict", str(junk), "-o", str(tmp_path / "scan.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert "scan.ndpi" in err and "Supported: Aperio .svs" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "scan.zarr").exists()

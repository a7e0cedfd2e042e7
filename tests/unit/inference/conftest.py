from pathlib import Path

import pytest

from ..models.conftest import _few_threads, tiny_dataset  # noqa: F401  (shared fixtures)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:  # noqa: F811
    """A real SSHR model version trained for one epoch on tiny tiles (seconds on CPU)."""
    from napari_wsss.events import run_to_end
    from napari_wsss.training.sshr import train_sshr

    out = tmp_path_factory.mktemp("models") / "tiny-sshr"
    return run_to_end(train_sshr(tiny_dataset, out, epochs=1, batch_size=4, input_size=64, kernel_size=3,
                                 pretrained="none", device="cpu"))


def make_slides(folder: Path, n: int, shape: tuple[int, int] = (384, 512), mixed: bool = False) -> list[Path]:
    """``n`` small generated H&E slides (pyramidal TIFF, 1 um/px) in ``folder``; their masks go to a sibling.

    ``mixed``: the second slide is rewritten as an OME-TIFF pyramid and the third as an Aperio-style SVS
    (``MPP = 1.0`` in its description), the formats tifffile writes here."""
    import tifffile

    from napari_wsss.data.synthetic_slide import write_slide
    from tests.conftest import write_pyramid

    folder.mkdir(parents=True, exist_ok=True)
    masks = folder.parent / f"{folder.name}-masks"
    masks.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        p = write_slide(folder / f"slide{i}.tif", shape=shape, seed=i, tile=256, levels=2)
        (folder / f"slide{i}_mask.tif").rename(masks / f"slide{i}_mask.tif")
        if mixed and i in (1, 2):
            img = tifffile.imread(p)
            p.unlink()
            if i == 1:
                p = write_pyramid(folder / f"slide{i}.ome.tif", img, n_levels=2, tile=128, mpp=1.0)
            else:
                p = _write_svs_like(folder / f"slide{i}.svs", img)
        out.append(p)
    return out


def _write_svs_like(path: Path, img) -> Path:
    """Aperio layout: tiled level 0, an untiled thumbnail, then the reduced level, each with an Aperio
    description (how tifffile recognises an SVS pyramid)."""
    import tifffile

    h, w = img.shape[:2]
    desc = f"Aperio Image Library v12.0.15\n{w}x{h} [0,0 {w}x{h}] (128x128) RGB|AppMag = 10|MPP = 1.0"
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, tile=(128, 128), photometric="rgb", compression="zlib", description=desc, metadata=None)
        tw.write(img[::8, ::8], photometric="rgb", description=f"Aperio Image Library v12.0.15\n{w}x{h} -> "
                 f"{w // 8}x{h // 8}", metadata=None)
        tw.write(img[::2, ::2], tile=(128, 128), photometric="rgb", compression="zlib", metadata=None,
                 description=f"Aperio Image Library v12.0.15\n{w}x{h} -> {w // 2}x{h // 2}|MPP = 1.0")
    return path

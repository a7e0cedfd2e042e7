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


def make_slides(folder: Path, n: int, shape: tuple[int, int] = (384, 512)) -> list[Path]:
    """``n`` small generated H&E slides (pyramidal TIFF, 1 um/px) in ``folder``; their masks go to a sibling."""
    from napari_wsss.data.synthetic_slide import write_slide

    folder.mkdir(parents=True, exist_ok=True)
    masks = folder.parent / f"{folder.name}-masks"
    masks.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        p = write_slide(folder / f"slide{i}.tif", shape=shape, seed=i, tile=256, levels=2)
        (folder / f"slide{i}_mask.tif").rename(masks / f"slide{i}_mask.tif")
        out.append(p)
    return out

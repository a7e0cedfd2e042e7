"""GUI test set-up: every test here is marked ``gui`` and needs a display (Xvfb in `make test`)."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.gui)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_wsss.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("data") / "luad", n_train=8, n_val=2, n_test=3, size=64, seed=1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    """A real SSHR model version trained for one epoch on 8 tiny tiles (seconds on CPU)."""
    from napari_wsss.events import run_to_end
    from napari_wsss.training.sshr import train_sshr

    out = tmp_path_factory.mktemp("models") / "tiny-sshr"
    return run_to_end(train_sshr(tiny_dataset, out, epochs=1, batch_size=4, input_size=64, kernel_size=3,
                                 pretrained="none", device="cpu"))

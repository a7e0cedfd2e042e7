"""Shared fixtures: a small synthetic tile folder with its annotation project, tagged from the file names."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tile_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_wsss.data.synthetic import write_dataset

    root = write_dataset(tmp_path_factory.mktemp("data") / "luad", n_train=10, n_val=0, n_test=0, size=64, seed=3)
    return root / "training"

"""A 3-class schema (GlaS: gland, non-gland, glass) with mask values and scored_as survives the model card,
the project store, export and import whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from napari_wsss.classes import GLAS, load_schema
from napari_wsss.data.tiles import list_training_tiles, read_mask
from napari_wsss.events import run_to_end
from napari_wsss.export.imports import import_set
from napari_wsss.export.training_set import export_project
from napari_wsss.models.card import ModelCard
from napari_wsss.store import Project


def test_card_carries_the_full_schema() -> None:
    card = ModelCard(method="sshr", backbone="small_cnn", schema=GLAS.to_dict())
    back = ModelCard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert back.class_schema == GLAS
    assert back.class_schema.classes[0].mask_value == 255 and back.class_schema.classes[2].scored_as == "non-gland"


def test_three_class_project_exports_and_imports(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = tmp_path / "tiles"
    folder.mkdir()
    project = Project.open(folder, load_schema(Path(__file__).resolve().parents[3] / "schemas" / "colon-gland.json"))
    cm = np.full((32, 40), 1, np.uint8)
    cm[4:20, 5:25] = 0  # gland
    cm[28:, 30:] = 2  # glass
    Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(folder / "a.png")
    project.register([{"key": "a", "image": "a.png"}])
    project.save_prediction("a", cm, "v1")
    project.set_status("a", "accepted")
    reloaded = Project.load(project.root)
    assert reloaded.schema == GLAS and np.array_equal(reloaded.load_mask("a"), cm)

    out = run_to_end(export_project(project.root, tmp_path / "set", formats=["png", "labels"], filter="all"))
    m = json.loads((out / "manifest.json").read_text())
    assert load_schema(m["schema"]) == GLAS
    assert np.array_equal(read_mask(out / "mask" / "a.png", GLAS), cm)
    tiles = list_training_tiles(out / "training", GLAS)
    assert [t.labels.tolist() for t in tiles] == [[1, 1]] and tiles[0].path.name == "a-[1 1].png"
    new = run_to_end(import_set(out, tmp_path / "copy.wsss", source=project.source))
    assert new.schema == GLAS and np.array_equal(new.load_mask("a"), cm)

"""The classes a training folder names: a patch set, an exported set, a tag set, a bare labels.csv."""

from __future__ import annotations

from pathlib import Path


def test_a_tag_set_or_a_bare_labels_csv_names_its_classes_too(tmp_path: Path) -> None:
    import json

    from napari_wsss.classes import BCSS_WSSS, GLAS
    from napari_wsss.data.folder_schema import schema_of_training_folder

    tags = tmp_path / "tags"
    (tags / "training").mkdir(parents=True)
    (tags / "schema.json").write_text(json.dumps(BCSS_WSSS.to_dict()))
    assert schema_of_training_folder(tags / "training") == ("bcss", str(tags / "schema.json"))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "labels.csv").write_text("filename," + ",".join(GLAS.foreground_names) + "\na.png,1,0\n")
    assert schema_of_training_folder(bare) == ("glas", str(bare / "labels.csv"))
    assert schema_of_training_folder(tmp_path) is None

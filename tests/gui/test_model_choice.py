"""Which method lists a version whose network changed kind: a fine-tune under its base's method, the distilled
shipped sshr-glas (and a fine-tune of it) under its teacher's."""

from __future__ import annotations

from types import SimpleNamespace

from napari_wsss.gui._model_choice import also_listed_under, list_model_versions


def _card(method: str, **config: object) -> SimpleNamespace:
    return SimpleNamespace(method=method, config=config)


def test_also_listed_under_base_or_teacher_method() -> None:
    assert also_listed_under(_card("sshr")) is None
    assert also_listed_under(_card("ifkd", finetune={"base_method": "sshr"})) == "sshr"
    assert also_listed_under(_card("ifkd", teacher_card={"method": "sshr"})) == "sshr"
    # a fine-tune of the distilled sshr-glas: its base was already ifkd, its teacher's card says sshr
    assert also_listed_under(_card("ifkd", finetune={"base_method": "ifkd"}, teacher_card={"method": "sshr"})) == "sshr"
    assert also_listed_under(_card("ifkd", finetune={"base_method": "ifkd"})) is None
    # distilled twice (sshr-glas since session 27): the teacher is an ifkd student, the first stage SSHR
    assert also_listed_under(_card("ifkd", teacher_card={"method": "ifkd"}, stage1_method="sshr")) == "sshr"
    assert also_listed_under(_card("ifkd", finetune={"base_method": "ifkd"}, teacher_card={"method": "ifkd"},
                                   stage1_method="sshr")) == "sshr"  # and a fine-tune of it


def test_shipped_sshr_glas_is_listed_under_its_own_and_its_teachers_method() -> None:
    rows = [(label, m) for label, _, m in list_model_versions() if label == "sshr-glas (shipped)"]
    assert sorted(m for _, m in rows) == ["ifkd", "sshr"]


def test_real_tiles_opened_by_napari_builtins_get_the_real_tissue_model(qtbot, make_napari_viewer,  # noqa: ANN001
                                                                        tmp_path) -> None:  # noqa: ANN001
    """napari's reader dialog offers its builtins beside napari-wsss: a user who picks them must not get the demo
    model (trained on generated tiles) preselected for real colon tiles (walk-through at the default window)."""
    from tests._glas import glas_copy
    from tests.gui._plugin import SEGMENT, dock

    folder = glas_copy(tmp_path / "colon", ("train_1.png",))
    viewer = make_napari_viewer()
    viewer.open(str(folder / "train_1.png"), plugin="napari")  # not the plugin's reader: no plugin metadata
    seg = dock(viewer, SEGMENT)
    assert seg.version_combo.currentText() == "sshr-glas (shipped)"
    assert "file names carry no class labels" in seg.model_info.text()  # the reason, from the file name napari kept


def test_an_image_opened_by_napari_builtins_can_be_reviewed(qtbot, make_napari_viewer, tmp_path) -> None:  # noqa: ANN001
    """Walk-through: a real image opened with napari's builtins was segmented, but Review said "no project (open
    tiles or a slide from a file)" of an image opened from a file, and nothing could be corrected."""
    import numpy as np

    from napari_wsss.store import Project
    from tests._glas import glas_copy
    from tests.gui._plugin import REVIEW, SEGMENT, dock

    folder = glas_copy(tmp_path / "colon", ("train_1.png",))
    viewer = make_napari_viewer()
    viewer.open(str(folder / "train_1.png"), plugin="napari")
    viewer.open(str(folder), plugin="napari")  # a folder by the builtins: a stack with no project of ours
    seg = dock(viewer, SEGMENT)
    seg.image_combo.setCurrentText("train_1")
    seg.segment()
    qtbot.waitUntil(lambda: seg.job is not None and not seg.job.running, timeout=120_000)
    assert seg.last_error is None, seg.last_error
    review = dock(viewer, REVIEW)
    review.image_combo.setCurrentText("train_1")
    assert review.session is not None and review.session.project.root == folder / "train_1.wsss"
    assert review.labels_layer is not None and review.labels_layer.visible
    assert Project.open(folder / "train_1.png").counts()["predicted"] == 1
    review.palette_buttons[0].click()
    assert review.last_error is None and review.labels_layer.mode == "paint"
    assert np.asarray(review.labels_layer.data).min() > 0

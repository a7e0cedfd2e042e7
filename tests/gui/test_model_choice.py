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


def test_shipped_sshr_glas_is_listed_under_its_own_and_its_teachers_method() -> None:
    rows = [(label, m) for label, _, m in list_model_versions() if label == "sshr-glas (shipped)"]
    assert sorted(m for _, m in rows) == ["ifkd", "sshr"]

"""Model versions from disk: a weights file holding code is refused in one line without running it; a card
whose input size is not a positive whole number is named."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from napari_wsss.models.card import load_card, load_weights
from napari_wsss.resources import default_model_dir


class _Payload:
    def __reduce__(self):  # noqa: ANN204
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['PWNED']).write_text('ran')",))


def test_a_weights_file_with_code_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PWNED", str(tmp_path / "pwned"))
    model = tmp_path / "m"
    shutil.copytree(default_model_dir(), model)
    (model / "weights.pt").write_bytes(pickle.dumps({"w": _Payload()}))
    with pytest.raises(ValueError) as info:
        load_weights(model)
    assert "cannot read the weights" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("value", ["x", 0, -3, True])
def test_a_card_input_size_that_is_not_a_size_is_named(tmp_path: Path, value: object) -> None:
    model = tmp_path / "m"
    shutil.copytree(default_model_dir(), model)
    card = json.loads((model / "card.json").read_text())
    (model / "card.json").write_text(json.dumps({**card, "input_size": value}))
    with pytest.raises(ValueError, match="card.json: 'input_size'"):
        load_card(model)

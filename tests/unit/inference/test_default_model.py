import numpy as np
import pytest

from napari_wsss.inference.segmenter import load_segmenter
from napari_wsss.resources import default_model_dir

from ..models._tiles import make_tile


@pytest.mark.skipif(not (default_model_dir() / "card.json").is_file(), reason="default model not shipped")
def test_shipped_default_model_loads_and_predicts():
    seg = load_segmenter(default_model_dir(), device="cpu")
    assert seg.card.method == "sshr" and seg.card.class_schema.foreground_names == ["TE", "NEC", "LYM", "TAS"]
    assert (default_model_dir() / "weights.pt").stat().st_size < 5e6
    img, mask, _ = make_tile(np.random.default_rng(0), 64)
    pred = seg.predict(img)
    assert pred.class_map.shape == (1, 64, 64) and pred.probs.shape == (1, 5, 64, 64)
    assert seg.card.metrics["test"]["mIoU"] >= 0.75

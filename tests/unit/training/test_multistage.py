import numpy as np

from napari_wsss.events import run_to_end
from napari_wsss.inference.segmenter import load_segmenter
from napari_wsss.models.card import load_card
from napari_wsss.training.multistage import train_multistage


def test_multistage_three_stages(tiny_dataset, tmp_path):
    # input_size 48 < tile size 64: pseudo-masks are resized (a read-only array bug once hid here)
    out = run_to_end(train_multistage(tiny_dataset, tmp_path / "ms", epochs=1, batch_size=8, input_size=48,
                                      num_threads=2))
    card = load_card(out)
    assert card.method == "multistage" and card.config["hfrm"] is False
    assert set(card.metrics["stage_seconds"]) == {"cam", "pseudo_masks", "segmentation"}
    assert 0 <= card.metrics["test"]["mIoU"] <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms"]  # stage folders cleaned up
    seg = load_segmenter(out, device="cpu")
    pred = seg.predict(np.full((1, 64, 64, 3), 250, np.uint8))
    assert (pred.class_map == 4).all()  # white glass is background

import numpy as np
import pytest
import torch

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.events import run_to_end
from napari_wsss.inference.segmenter import load_segmenter, predict_stop_aware
from napari_wsss.models.card import ModelCard, save_model
from napari_wsss.models.sshr import SSHRNet

from ..models._tiles import make_tile


def _save_random_sshr(path, n_classes=4, scale=1.0):
    torch.manual_seed(0)
    net = SSHRNet("small_cnn", n_classes, kernel_size=3)
    card = ModelCard(method="sshr", backbone="small_cnn", schema=LUAD_HISTOSEG.to_dict(), input_size=64,
                     config={"kernel_size": 3, "hfrm": True, "threshold": 0.2, "scale": scale})
    return save_model(path, net.state_dict(), card)


@pytest.fixture(scope="module")
def tiles():
    rng = np.random.default_rng(1)
    return [make_tile(rng, 64) for _ in range(3)]


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_predict_shapes_classes_background(tmp_path, tiles, scale):
    seg = load_segmenter(_save_random_sshr(tmp_path / "m", scale=scale), device="cpu")
    imgs = np.stack([t[0] for t in tiles])
    pred = seg.predict(imgs, batch_size=2)
    assert pred.class_map.shape == (3, 64, 64) and pred.class_map.dtype == np.uint8
    assert pred.probs.shape == (3, 5, 64, 64) and pred.probs.dtype == np.float32
    assert pred.class_map.max() <= 4
    np.testing.assert_allclose(pred.probs.sum(1), 1, atol=1e-4)
    for (img, mask, _), cm, pr in zip(tiles, pred.class_map, pred.probs):
        white = mask == 4
        if white.any():  # the synthetic white patch becomes background, tissue never does
            assert (cm[white] == 4).mean() > 0.95
            assert (pr[4][white] > 0.9).mean() > 0.95
        assert (cm[~white] != 4).mean() > 0.95
    single = seg.predict(imgs[0])
    np.testing.assert_array_equal(single.class_map[0], pred.class_map[0])


def test_predict_stop_aware_batches(tmp_path, tiles):
    seg = load_segmenter(_save_random_sshr(tmp_path / "m"), device="cpu")
    imgs = np.stack([t[0] for t in tiles])
    seen = []
    pred = run_to_end(predict_stop_aware(seg, imgs, batch_size=2), seen.append)
    assert [p.step for p in seen] == [2, 3] and pred.class_map.shape == (3, 64, 64)


def test_weights_with_wrong_classes_give_clear_error(tmp_path):
    torch.manual_seed(0)
    net3 = SSHRNet("small_cnn", 3, kernel_size=3)
    card = ModelCard(method="sshr", backbone="small_cnn", schema=LUAD_HISTOSEG.to_dict(), input_size=64,
                     config={"kernel_size": 3})
    path = save_model(tmp_path / "bad", net3.state_dict(), card)
    with pytest.raises(ValueError, match=r"3 tissue classes.*has 4"):
        load_segmenter(path, device="cpu")


def test_unknown_method_lists_registered(tmp_path):
    card = ModelCard(method="nope", backbone="small_cnn", schema=LUAD_HISTOSEG.to_dict())
    path = save_model(tmp_path / "x", {}, card)
    with pytest.raises(KeyError, match="sshr"):
        load_segmenter(path, device="cpu")


def test_glass_min_size_from_the_card(tmp_path):
    """A white region of 40x40 px is glass by default; a card with a larger ``glass_min_size`` (colon glands have
    white lumens) or 0 leaves it to the network, so it is never the background class."""
    from napari_wsss.models.card import load_card, save_card

    img = np.full((1, 64, 64, 3), 120, np.uint8)
    img[0, 10:50, 10:50] = 250
    path = _save_random_sshr(tmp_path / "m")
    bg = LUAD_HISTOSEG.background_index
    assert (load_segmenter(path, device="cpu").predict(img).class_map[0, 10:50, 10:50] == bg).all()
    for size in (0, 5000):
        card = load_card(path)
        card.config["glass_min_size"] = size
        save_card(path, card)
        assert not (load_segmenter(path, device="cpu").predict(img).class_map == bg).any()


def test_tta_flips_average_the_mirrored_maps(tmp_path, tiles):
    """With ``tta_flips`` the class maps are the mean over the tile and its horizontal and vertical mirrors."""
    import torch

    from napari_wsss.models.card import load_card, save_card
    from napari_wsss.ops.cam import add_background, scores_to_probs

    path = _save_random_sshr(tmp_path / "m")
    card = load_card(path)
    card.config.update(tta_flips=True, threshold=0.0)
    save_card(path, card)
    seg = load_segmenter(path, device="cpu")
    img = tiles[0][0][None]
    f = seg.fused_cams(img)[0]
    h = seg.fused_cams(np.ascontiguousarray(img[:, :, ::-1]))[0].flip(-1)
    v = seg.fused_cams(np.ascontiguousarray(img[:, ::-1]))[0].flip(-2)
    bg = torch.zeros(img.shape[:3], dtype=torch.bool)
    expected = scores_to_probs(add_background((f + h + v) / 3, bg)).numpy()
    got = seg.predict(img).probs
    assert np.allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, scores_to_probs(add_background(f, bg)).numpy(), atol=1e-4)

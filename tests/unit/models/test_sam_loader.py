"""Loading the user's SAM checkpoint (a tiny random SAM here), clear errors, and the embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_wsss.models import sam as sam_mod
from napari_wsss.models.sam import EmbeddingCache, SamSession, image_key, load_sam, resolve_checkpoint
from tests._sam import tiny_arch, write_tiny_sam


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pth")


@pytest.fixture(scope="module")
def loaded(tiny_ckpt: Path):
    return load_sam(tiny_ckpt, "auto")


def test_loads_tiny_sam_through_the_loader(tiny_ckpt: Path, loaded) -> None:
    from segment_anything.modeling import Sam

    assert isinstance(loaded.model, Sam)
    assert loaded.arch == tiny_arch() and loaded.model_type == "custom-96x2"
    ref = torch.load(tiny_ckpt, weights_only=True)
    got = loaded.model.state_dict()
    assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) for k in ref)


def test_env_variable_names_the_checkpoint(tiny_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sam_mod.ENV_CHECKPOINT, str(tiny_ckpt))
    assert resolve_checkpoint(None) == tiny_ckpt
    assert load_sam().checkpoint == tiny_ckpt


def test_no_checkpoint_configured_says_where_to_put_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sam_mod.ENV_CHECKPOINT, raising=False)
    with pytest.raises(FileNotFoundError) as e:
        load_sam(None)
    msg = str(e.value)
    assert "NAPARI_WSSS_SAM_CHECKPOINT" in msg and "--sam-checkpoint" in msg and "SAM refine" in msg
    assert "sam_vit_b_01ec64.pth" in msg and "never downloads" in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sam(tmp_path / "nope.pth")


def test_corrupt_file_is_named(tmp_path: Path, tiny_ckpt: Path) -> None:
    bad = tmp_path / "sam_vit_b_01ec64.pth"
    bad.write_bytes(tiny_ckpt.read_bytes()[:5000])  # a truncated download
    with pytest.raises(ValueError, match=r"sam_vit_b_01ec64\.pth cannot be read as a vit_b SAM checkpoint"):
        load_sam(bad, "vit_b")


def test_not_a_sam_file(tmp_path: Path) -> None:
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="resnet.pth is not a vit_h SAM checkpoint"):
        load_sam(other, "vit_h")


def test_wrong_model_type_names_file_and_types(tiny_ckpt: Path) -> None:
    with pytest.raises(ValueError) as e:
        load_sam(tiny_ckpt, "vit_b")
    msg = str(e.value)
    assert "tiny_sam.pth" in msg and "custom-96x2" in msg and "vit_b" in msg and "768" in msg
    with pytest.raises(ValueError, match="Unknown SAM model type"):
        load_sam(tiny_ckpt, "vit_x")


def test_official_architectures_are_recognised() -> None:
    from segment_anything import sam_model_registry

    # infer_arch on real vit_b shapes (built, not loaded: no download); compare with segment_anything's own
    state = {k: v for k, v in sam_model_registry["vit_b"]().state_dict().items()}
    arch = sam_mod.infer_arch(state)
    assert arch.model_type == "vit_b" and arch.num_heads == 12 and arch.global_attn_indexes == (2, 5, 8, 11)
    assert arch.img_size == 1024 and arch.window_size == 14


def test_cache_hit_skips_the_encoder(loaded, tmp_path: Path) -> None:
    calls = []
    handle = loaded.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        s1 = SamSession(loaded, EmbeddingCache(tmp_path / "cache"))
        s1.set_image(img)
        m1, _ = s1.predict(np.array([[10.0, 20.0]]))
        assert len(calls) == 1 and m1.shape == (48, 64)
        files = list((tmp_path / "cache").rglob("*.npz"))
        assert len(files) == 1 and files[0].stem == image_key(img, loaded.model_id)
        # a new session (fresh process, empty memory) reads the disk cache: no encoder call
        s2 = SamSession(loaded, EmbeddingCache(tmp_path / "cache"))
        s2.set_image(img)
        m2, _ = s2.predict(np.array([[10.0, 20.0]]))
        assert len(calls) == 1 and s2.cache.hits == 1 and np.array_equal(m1, m2)
        s2.predict(box=np.array([5, 5, 30, 40]))  # more prompts: decoder only
        s2.set_image(img)
        assert len(calls) == 1
        s2.set_image(img[::-1].copy())  # another image: one encoder call
        assert len(calls) == 2
    finally:
        handle.remove()


def test_damaged_cache_entry_is_recomputed(loaded, tmp_path: Path) -> None:
    img = np.full((32, 32, 3), 128, np.uint8)
    cache = EmbeddingCache(tmp_path)
    SamSession(loaded, cache).set_image(img)
    f = next(tmp_path.rglob("*.npz"))
    f.write_bytes(b"junk")
    fresh = EmbeddingCache(tmp_path)
    assert fresh.get(f.stem, loaded.model_id) is None and not f.exists()


def test_session_validates_input(loaded) -> None:
    s = SamSession(loaded)
    with pytest.raises(RuntimeError, match="set_image"):
        s.predict(np.array([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="uint8"):
        s.set_image(np.zeros((8, 8, 3), np.float32))
    s.set_image(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="at least one point or a box"):
        s.predict()

"""Pixel correlation module: shapes, row-normalised affinity, identity-like behaviour, the consistency loss."""

import pytest
import torch

from napari_wsss.models.pcm import (PixelCorrelation, max_normalise, pcm_consistency_loss, pixel_affinity,
                                    pixel_features, refine_cams)
from napari_wsss.models.sshr import SSHRNet


@pytest.mark.parametrize("mode", ["relu", "softmax"])
def test_affinity_rows_are_normalised(mode):
    torch.manual_seed(0)
    aff = pixel_affinity(torch.randn(2, 8, 5, 6), mode)
    assert aff.shape == (2, 30, 30)
    assert (aff >= 0).all() and torch.allclose(aff.sum(dim=-1), torch.ones(2, 30), atol=1e-5)


def test_uniform_and_orthogonal_features():
    cams = torch.rand(1, 3, 4, 4)
    # uniform features: every pixel alike -> uniform affinity; a constant CAM is a fixed point
    aff = pixel_affinity(torch.ones(1, 5, 4, 4))
    assert torch.allclose(aff, torch.full_like(aff, 1 / 16))
    flat = torch.full((1, 3, 4, 4), 0.7)
    assert torch.allclose(refine_cams(flat, aff), flat)
    assert torch.allclose(refine_cams(cams, aff), cams.mean(dim=(2, 3), keepdim=True).expand_as(cams), atol=1e-6)
    # one-hot (orthogonal) pixel features -> identity affinity -> CAMs unchanged
    onehot = torch.eye(16).view(1, 16, 4, 4)
    assert torch.allclose(refine_cams(cams, pixel_affinity(onehot)), cams, atol=1e-6)
    # zero features: identity rows, not NaN
    assert torch.allclose(pixel_affinity(torch.zeros(1, 4, 2, 2)), torch.eye(4)[None])


def test_refinement_spreads_within_feature_regions():
    feats = torch.zeros(1, 2, 4, 4)
    feats[:, 0, :, :2] = 1  # left half one tissue, right half another
    feats[:, 1, :, 2:] = 1
    cam = torch.zeros(1, 1, 4, 4)
    cam[0, 0, 0, 0] = 1.0  # one discriminative spot
    out = PixelCorrelation()([cam], [feats])[0]
    assert out.shape == cam.shape
    assert torch.allclose(out[0, 0, :, :2], torch.full((4, 2), 1 / 8)) and (out[0, 0, :, 2:] == 0).all()


def test_module_and_loss_on_a_network():
    torch.manual_seed(0)
    net = SSHRNet("small_cnn", 4, kernel_size=3)
    x = torch.randn(2, 3, 32, 32)
    cams, feats = net.forward_with_features(x)
    assert len(feats) == 4 and all(f.shape[-2:] == cams[0].shape[-2:] for f in feats)
    assert pixel_features(feats).shape[1] == sum(f.shape[1] for f in feats)
    refined = PixelCorrelation("softmax")(cams, feats)
    assert [r.shape for r in refined] == [c.shape for c in cams] and all((r >= 0).all() for r in refined)
    labels = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]])
    loss = pcm_consistency_loss(cams, feats, labels, (0.1, 0.15, 0.25, 0.5), PixelCorrelation())
    assert loss.ndim == 0 and torch.isfinite(loss) and loss >= 0
    loss.backward()
    assert net.heads[3].weight.grad is not None and net.heads[3].weight.grad.abs().sum() > 0
    assert float(max_normalise(cams[3].detach()).max()) <= 1.0


def test_chunked_refinement_matches_full_affinity():
    from napari_wsss.models.pcm import refine_by_features

    torch.manual_seed(1)
    feats, cams = torch.randn(2, 6, 7, 9), torch.rand(2, 3, 7, 9)
    full = refine_cams(cams, pixel_affinity(feats, "softmax"))
    for chunk in (1, 10, 63, 1000):
        assert torch.allclose(refine_by_features([cams], feats, "softmax", chunk=chunk)[0], full, atol=1e-5)

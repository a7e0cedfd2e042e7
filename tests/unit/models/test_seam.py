"""SEAM's learned PCM: the projection learns, affinity rows sum to 1, ER/ECR behave, the network owns it."""

import pytest
import torch

from napari_wsss.models.pcm import pixel_affinity
from napari_wsss.models.seam import (
    SeamPCM,
    cross_equivariance_loss,
    equivariance_loss,
    pcm_input,
    seam_losses,
    uses_seam_pcm,
)
from napari_wsss.models.sshr import SSHRNet


def _views(net: SSHRNet, x: torch.Tensor, scale: float = 0.5) -> tuple[tuple, tuple]:
    x2 = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=True)
    return (*net.forward_with_features(x), x), (*net.forward_with_features(x2), x2)


def test_sshr_owns_the_projection_and_gradients_reach_only_it_through_ecr():
    torch.manual_seed(0)
    net = SSHRNet("small_cnn", 3, kernel_size=3, seam_pcm=True)
    assert isinstance(net.pcm, SeamPCM) and any(k.startswith("pcm.") for k in net.state_dict())
    assert set(map(id, net.pcm.parameters())) <= set(map(id, net.new_parameters()))  # the new layers' lr
    assert SSHRNet("small_cnn", 3, kernel_size=3).pcm is None
    v1, v2 = _views(net, torch.randn(2, 3, 64, 64))
    terms = seam_losses(net.pcm, v1, v2, torch.tensor([[1.0, 0, 1], [0, 1, 0]]), (0.1, 0.15, 0.25, 0.5))
    assert all(torch.isfinite(t) and t > 0 for t in terms.values())
    terms["ecr"].backward()
    grads = [p.grad for p in net.pcm.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)  # the projection is learned
    assert net.heads[3].weight.grad is None  # ECR trains the PCM only (detached CAMs and features, as SEAM)


def test_er_reaches_the_cam_heads():
    torch.manual_seed(0)
    net = SSHRNet("small_cnn", 3, kernel_size=3, seam_pcm=True)
    v1, v2 = _views(net, torch.randn(2, 3, 64, 64))
    seam_losses(net.pcm, v1, v2, torch.ones(2, 3), (0.1, 0.15, 0.25, 0.5))["er"].backward()
    assert net.heads[3].weight.grad.abs().sum() > 0 and net.pcm.embed.weight.grad is None


def test_affinity_rows_are_normalised_and_refinement_is_a_weighted_mean():
    torch.manual_seed(1)
    pcm = SeamPCM((8, 16), sources=(0, 1), dims=(4, 6), embed_dim=10)
    feats = [torch.randn(2, 8, 6, 5), torch.randn(2, 16, 3, 3)]  # a second map at another stride is resized
    image = torch.randn(2, 3, 24, 20)
    emb = pcm.embedding(feats, image, (6, 5))
    assert emb.shape == (2, 10, 6, 5)
    aff = pixel_affinity(emb)
    assert (aff >= 0).all() and torch.allclose(aff.sum(-1), torch.ones(2, 30), atol=1e-5)
    flat = torch.full((2, 4, 6, 5), 0.3)
    assert torch.allclose(pcm(flat, feats, image), flat, atol=1e-5)  # a constant map is a fixed point


def test_pcm_input_keeps_each_pixels_top_class_and_adds_background():
    cams = torch.tensor([[[[2.0, 0.0]], [[1.0, -1.0]]]])  # (1, 2, 1, 2)
    inp = pcm_input(cams)
    assert inp.shape == (1, 3, 1, 2) and not inp.requires_grad
    assert torch.allclose(inp[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-4)  # class 0 wins, class 1 zeroed
    assert torch.allclose(inp[0, :, 0, 1], torch.tensor([0.0, 0.0, 1.0]), atol=1e-4)  # nothing: all background


def test_er_is_zero_for_an_equivariant_map_and_positive_otherwise():
    torch.manual_seed(2)
    cam = torch.randn(2, 3, 16, 16)
    small = torch.nn.functional.interpolate(cam, size=(8, 8), mode="bilinear", align_corners=False)
    mask = torch.ones(2, 3, 1, 1)
    assert float(equivariance_loss(cam, small, mask)) == pytest.approx(0.0, abs=1e-7)
    assert float(equivariance_loss(cam, small.flip(-1), mask)) > 0.05
    assert float(equivariance_loss(cam, small.flip(-1), torch.zeros(2, 3, 1, 1))) == 0.0  # unlabelled: no loss


def test_ecr_is_zero_when_the_refined_map_matches_the_other_views_decision():
    cam = torch.zeros(1, 2, 4, 4)
    cam[0, 0, :, :2] = 1.0  # class 0 left, class 1 right
    cam[0, 1, :, 2:] = 1.0
    mask = torch.ones(1, 2, 1, 1)
    refined = torch.cat([cam, torch.zeros(1, 1, 4, 4)], dim=1)  # background 1 - max = 0 everywhere
    assert float(cross_equivariance_loss(refined, cam, mask)) == pytest.approx(0.0, abs=1e-4)
    assert float(cross_equivariance_loss(refined.flip(-1), cam, mask)) > 0.5


def test_card_kind_decides_whether_the_network_has_it():
    assert uses_seam_pcm({"pcm": True, "pcm_kind": "seam"})
    assert not uses_seam_pcm({"pcm": True})  # cards from before pcm_kind: parameter-free
    assert not uses_seam_pcm({"pcm": False, "pcm_kind": "seam"})
    with pytest.raises(ValueError, match="pcm_kind"):
        uses_seam_pcm({"pcm": True, "pcm_kind": "learned"})

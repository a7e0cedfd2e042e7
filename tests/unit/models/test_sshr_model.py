import pytest
import torch

from napari_wsss.models._registry import BACKBONES
from napari_wsss.models.sshr import HFRM, SSHRNet, cam_logits
from napari_wsss.ops.losses import hierarchical_loss


def test_backbones_registered_with_four_stride8_maps():
    assert {"small_cnn", "resnet18", "resnet34", "resnet50"} <= set(BACKBONES.names())
    for name in ("small_cnn", "resnet18"):
        net = BACKBONES.get(name)(pretrained=False)
        feats = net(torch.randn(1, 3, 64, 64))
        assert [f.shape[1] for f in feats] == list(net.out_channels)
        assert all(f.shape[-2:] == (8, 8) for f in feats)


def test_unknown_backbone_lists_choices():
    with pytest.raises(KeyError, match="small_cnn"):
        SSHRNet("vgg99", 4)


def test_hfrm_is_identity_at_init():
    torch.manual_seed(0)
    m = HFRM(8, 16, kernel_size=5)
    f, d = torch.randn(2, 8, 6, 6), torch.randn(2, 16, 3, 3)
    assert torch.equal(m(f, d), f)
    assert m.gamma_v.item() == 0 and m.gamma_c.item() == 0
    w = m.context.weight
    assert w.shape == (8, 1, 5, 5) and torch.allclose(w, torch.full_like(w, 1 / 25))


def test_hfrm_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        HFRM(8, 16, kernel_size=4)


def test_hfrm_not_identity_after_a_training_step():
    torch.manual_seed(0)
    net = SSHRNet("small_cnn", 4, kernel_size=3)
    x = torch.randn(4, 3, 64, 64)
    y = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0]])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss, _ = hierarchical_loss(cam_logits(net(x)), y)
    loss.backward()
    opt.step()
    net.eval()
    *shallow, deep = net.backbone(x)
    m = net.hfrm[0]
    assert m.gamma_v.item() != 0 and m.gamma_c.item() != 0
    assert not torch.allclose(m(shallow[0], deep), shallow[0])


def test_sshrnet_outputs_and_baseline_flag():
    net = SSHRNet("small_cnn", 3, hfrm=False)
    assert net.hfrm is None
    cams = net(torch.randn(2, 3, 64, 64))
    assert len(cams) == 4 and all(c.shape == (2, 3, 8, 8) for c in cams)
    assert [lg.shape for lg in cam_logits(cams)] == [(2, 3)] * 4
    with_hfrm = SSHRNet("small_cnn", 3)
    assert len(with_hfrm.new_parameters()) > len(net.new_parameters())


def test_resnet_sshr_with_a_stride4_shallow_map_makes_cams_of_each_size():
    from napari_wsss.ops.cam import fuse_cams

    torch.manual_seed(0)
    net = SSHRNet("resnet18", 3, kernel_size=3, shallow_stride=4).eval()
    with torch.no_grad():
        cams = net(torch.randn(2, 3, 64, 64))
    assert [tuple(c.shape) for c in cams] == [(2, 3, 16, 16)] + [(2, 3, 8, 8)] * 3
    assert [tuple(lg.shape) for lg in cam_logits(cams)] == [(2, 3)] * 4
    fused = fuse_cams(cams, (0.4, 0.3, 0.2, 0.1), (64, 64))  # the stride-4 level fused too
    assert fused.shape == (2, 3, 64, 64) and 0 <= fused.min() and fused.max() <= 1


def test_pcm_loss_and_refinement_take_mixed_strides():
    from napari_wsss.models.pcm import PixelCorrelation, pcm_consistency_loss

    torch.manual_seed(0)
    net = SSHRNet("resnet18", 3, kernel_size=3, shallow_stride=4)
    cams, feats = net.forward_with_features(torch.randn(2, 3, 64, 64))
    pcm = PixelCorrelation()
    loss = pcm_consistency_loss(cams, feats, torch.ones(2, 3), (0.1, 0.15, 0.25, 0.5), pcm)
    loss.backward()
    assert torch.isfinite(loss) and net.heads[0].weight.grad is not None
    assert [tuple(c.shape[-2:]) for c in pcm(cams, feats)] == [(8, 8)] * 4  # at the deep map's stride

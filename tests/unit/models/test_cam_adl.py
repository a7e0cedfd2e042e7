"""ADL and the high-frequency ("enhanced") channel of the CAM+SAM classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wsss.models.cam import ADL, CAMClassifier, adl_maps, high_frequency


def _features() -> torch.Tensor:
    x = torch.rand(2, 8, 16, 16) * 0.1
    x[:, :, 4:6, 4:6] += 5.0  # a very discriminative spot
    return x


def test_adl_is_identity_at_eval() -> None:
    adl = ADL(drop_rate=1.0).eval()
    x = _features()
    assert torch.equal(adl(x), x)


def test_adl_drop_mask_hides_the_most_discriminative_region() -> None:
    x = _features()
    drop, importance = adl_maps(x, gamma=0.8)
    assert drop.shape == (2, 1, 16, 16) and set(drop.unique().tolist()) == {0.0, 1.0}
    assert (drop[:, :, 4:6, 4:6] == 0).all() and drop.sum() == 2 * (256 - 4)
    assert torch.allclose(importance, torch.sigmoid(x.mean(1, keepdim=True)))
    out = ADL(drop_rate=1.0, gamma=0.8).train()(x)
    assert (out[:, :, 4:6, 4:6] == 0).all() and torch.equal(out[:, :, 8:, 8:], x[:, :, 8:, 8:])


def test_adl_importance_branch_and_mix_rate() -> None:
    x = _features()
    out = ADL(drop_rate=0.0).train()(x)
    assert torch.allclose(out, x * torch.sigmoid(x.mean(1, keepdim=True)))
    torch.manual_seed(0)
    adl = ADL(drop_rate=0.75).train()
    x = _features().repeat(200, 1, 1, 1)
    dropped = (adl(x)[:, 0, 4, 4] == 0).float().mean().item()
    assert 0.65 < dropped < 0.85  # each sample drops with probability 0.75


def test_adl_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="drop_rate"):
        ADL(drop_rate=1.5)
    with pytest.raises(ValueError, match="gamma"):
        ADL(gamma=0)


def test_high_frequency_removes_smooth_content_and_keeps_texture() -> None:
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    smooth = torch.sin(2 * np.pi * xx / 64)[None, None].repeat(1, 3, 1, 1)  # 1 cycle / 64 px
    textured = smooth.clone()
    textured[..., 20:40, 20:40] += 0.5 * torch.sin(2 * np.pi * xx[20:40, 20:40] / 3)  # nuclei-scale texture
    hf_smooth, hf_tex = high_frequency(smooth), high_frequency(textured)
    assert hf_tex.shape == (1, 1, 64, 64)
    raw = lambda t: torch.fft.ifft2(torch.fft.fft2(t.mean(1)) * (torch.fft.fftfreq(64)[None] ** 2 + torch.fft.fftfreq(64)[:, None] ** 2 >= 0.05 ** 2)).abs()  # noqa: E731
    assert raw(smooth).max() < 1e-4  # the low frequency is gone
    assert raw(textured)[0, 25:35, 25:35].mean() > 10 * raw(textured)[0, :10, :10].mean()  # texture stays
    assert abs(float(hf_tex.mean())) < 1e-4  # zero-mean channel
    # invariant to an affine intensity change (normalised vs 0..1 input give the same channel)
    assert torch.allclose(high_frequency(textured * 4 + 2), hf_tex, atol=1e-3)
    assert torch.isfinite(hf_smooth).all()


@pytest.mark.parametrize("enhanced", [True, False])
def test_cam_classifier_shapes_and_adl_placement(enhanced: bool) -> None:
    net = CAMClassifier("small_cnn", 4, adl_stages=(3, 4), enhanced=enhanced, hf_mode="channel")
    assert len(net.adl_layers()) == 2
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == (4 if enhanced else 3)
    if enhanced:
        assert torch.all(first.weight[:, 3] == 0)  # starts as the RGB network
    cams = net.eval()(torch.randn(2, 3, 64, 64))
    assert len(cams) == 1 and cams[0].shape == (2, 4, 8, 8)
    net.train()
    loss = net(torch.randn(2, 3, 64, 64))[0].mean()
    loss.backward()
    if enhanced:
        assert first.weight.grad[:, 3].abs().sum() > 0  # the texture channel learns


def test_cam_classifier_rejects_bad_stage() -> None:
    with pytest.raises(ValueError, match="adl_stages"):
        CAMClassifier("small_cnn", 4, adl_stages=(5,))


@pytest.mark.parametrize("backbone", ["small_cnn", "resnet18"])
def test_adapters_prompt_every_stage_and_learn(backbone: str) -> None:
    torch.manual_seed(0)
    net = CAMClassifier(backbone, 3, adl_stages=(3, 4))  # hf_mode="adapter" is the default
    assert net.hf_mode == "adapter" and len(net.hf_adapters) == 4
    first = next(m for m in net.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 3  # RGB trunk: the texture enters through the adapters
    adapter_params = {id(p) for m in (net.hf_embed, net.hf_adapters) for p in m.parameters()}
    assert adapter_params <= {id(p) for p in net.new_parameters()}
    x = torch.randn(2, 3, 64, 64)
    rgb = CAMClassifier(backbone, 3, adl_stages=(3, 4), enhanced=False)
    rgb.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("hf_")})
    assert torch.allclose(net.eval()(x)[0], rgb.eval()(x)[0], atol=1e-5)  # zero-initialised prompts
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for step in range(2):
        opt.zero_grad()
        net(x)[0].square().mean().backward()
        if step == 0:  # the up-projections start at zero, so only they learn at first
            assert all(a.up.weight.grad.abs().sum() > 0 for a in net.hf_adapters)
        opt.step()
    assert all(a.tune.weight.grad.abs().sum() > 0 for a in net.hf_adapters)
    assert net.hf_embed.weight.grad.abs().sum() > 0
    # after training the prompts carry the image's texture into the stages
    textured = 0.5 * torch.sign(torch.randn(1, 3, 64, 64))
    emb = net.hf_embed(high_frequency(textured))
    assert all(a(emb, (8, 8)).abs().sum() > 0 for a in net.hf_adapters)


def test_channel_form_loads_old_style_weights_and_cards_without_hf_mode() -> None:
    from napari_wsss.classes import LUAD_HISTOSEG
    from napari_wsss.inference.cam_sam import build_classifier
    from napari_wsss.models.card import ModelCard

    torch.manual_seed(0)
    old = CAMClassifier("small_cnn", 4, hf_mode="channel").state_dict()  # the layout of earlier versions
    assert not any(k.startswith("hf_") for k in old) and old["backbone.stem.0.0.weight"].shape[1] == 4
    card = ModelCard(method="cam_sam", backbone="small_cnn", schema=LUAD_HISTOSEG.to_dict(),
                     config={"adl_stages": [3, 4], "enhanced": True})
    net = build_classifier(card)
    assert net.hf_mode == "channel" and net.hf_adapters is None
    net.load_state_dict(old)  # strict: same keys and shapes
    assert net.eval()(torch.randn(1, 3, 32, 32))[0].shape == (1, 4, 4, 4)
    with pytest.raises(RuntimeError):
        build_classifier(ModelCard(method="cam_sam", backbone="small_cnn", schema=LUAD_HISTOSEG.to_dict(),
                                   config={"hf_mode": "adapter"})).load_state_dict(old)


def test_cam_classifier_rejects_unknown_hf_mode() -> None:
    with pytest.raises(ValueError, match="hf_mode"):
        CAMClassifier("small_cnn", 4, hf_mode="prompt")

"""ImageNet weights a user can get: fetched into torch's cache with the hash checked, clear offline messages,
cached files still used. Everything is served from a loopback HTTP server; nothing reaches the internet."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch

from napari_wsss.models import backbones


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    assert backbones.imagenet_cache_dir() == home / "hub" / "checkpoints"
    return home


@pytest.fixture
def served(tmp_path: Path):  # noqa: ANN201
    """(folder, base URL) of a loopback HTTP server running in a thread."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _tiny_weights(folder: Path, wrong_hash: bool = False) -> str:
    """A tiny state dict saved as ``tiny-<first 8 hex of its SHA-256>.pth`` (torchvision's naming); its name."""
    tmp = folder / "tiny.pth"
    torch.save({"w": torch.arange(3.0)}, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    name = f"tiny-{'deadbeef' if wrong_hash else digest}.pth"
    tmp.rename(folder / name)
    return name


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fetch_downloads_into_torch_home_with_the_hash_checked(torch_home, served, monkeypatch) -> None:  # noqa: ANN001
    folder, base = served
    name = _tiny_weights(folder)
    monkeypatch.setattr(backbones, "imagenet_weights_url", lambda arch: f"{base}/{name}")
    state = backbones.fetch_imagenet_weights("resnet18", progress=False)
    assert torch.equal(state["w"], torch.arange(3.0))
    cached = torch_home / "hub" / "checkpoints" / name
    assert cached.is_file() and backbones.cached_imagenet_file("resnet18") == cached
    (folder / name).unlink()  # the second call reads the cache, not the server
    assert torch.equal(backbones.fetch_imagenet_weights("resnet18", progress=False)["w"], torch.arange(3.0))


def test_wrong_hash_is_refused_and_not_kept(torch_home, served, monkeypatch) -> None:  # noqa: ANN001
    folder, base = served
    name = _tiny_weights(folder, wrong_hash=True)
    monkeypatch.setattr(backbones, "imagenet_weights_url", lambda arch: f"{base}/{name}")
    with pytest.raises(ValueError) as err:
        backbones.fetch_imagenet_weights("resnet18", progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "hash check" in msg and name in msg and f"{base}/{name}" in msg
    assert str(torch_home / "hub" / "checkpoints") in msg
    assert not (torch_home / "hub" / "checkpoints" / name).exists()


def test_offline_message_names_file_url_and_folder(torch_home, monkeypatch) -> None:  # noqa: ANN001
    url = f"http://127.0.0.1:{_closed_port()}/resnet18-f37072fd.pth"
    monkeypatch.setattr(backbones, "imagenet_weights_url", lambda arch: url)
    with pytest.raises(FileNotFoundError) as err:
        backbones.build_backbone("resnet18", pretrained=True)
    msg = str(err.value)
    assert "\n" not in msg and "resnet18-f37072fd.pth" in msg and url in msg
    assert str(torch_home / "hub" / "checkpoints") in msg


def test_cached_weights_load_without_any_download(torch_home, monkeypatch) -> None:  # noqa: ANN001
    import torchvision

    def no_download(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("nothing may be downloaded when the file is cached or not asked for")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    fresh = backbones.build_backbone("resnet18", pretrained="auto")  # nothing cached: scratch, no download
    assert backbones.cached_imagenet_file("resnet18") is None
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["conv1.weight"].fill_(0.25)
    path = backbones.imagenet_cache_dir() / Path(backbones.imagenet_weights_url("resnet18")).name
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    assert path.name == "resnet18-f37072fd.pth"
    for pretrained in ("auto", True):
        net = backbones.build_backbone("resnet18", pretrained=pretrained)
        assert torch.all(net.stem[0].weight == 0.25)
    assert not torch.all(fresh.stem[0].weight == 0.25)


def test_unknown_backbone_has_no_imagenet_weights() -> None:
    with pytest.raises(KeyError, match="resnet18"):
        backbones.imagenet_weights_url("small_cnn")


def test_train_pretrained_offline_fails_before_training(torch_home, monkeypatch, tmp_path, capsys) -> None:  # noqa: ANN001
    from napari_wsss.cli import main

    from ._tiles import write_tiny_dataset

    data = write_tiny_dataset(tmp_path / "data", n_train=4, n_eval=1)
    url = f"http://127.0.0.1:{_closed_port()}/resnet18-f37072fd.pth"
    monkeypatch.setattr(backbones, "imagenet_weights_url", lambda arch: url)
    rc = main(["train", "--method", "mil", "--data", str(data), "--out", str(tmp_path / "m"), "--backbone",
               "resnet18", "--pretrained", "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "resnet18-f37072fd.pth" in err and "hub" in err
    assert not (tmp_path / "m").exists()


def _bn_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items() if "running_" in k or "num_batches" in k}


def _train_step(net: torch.nn.Module, x: torch.Tensor) -> None:
    net.train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    out = net(x)
    sum(o.mean() for o in (out if isinstance(out, list) else [out])).backward()
    opt.step()


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_keeps_running_stats_and_stem_fixed(freeze: bool) -> None:
    torch.manual_seed(0)
    net = backbones.ResNetFeatures("resnet18", freeze_bn=freeze)
    before, stem, layer1 = _bn_state(net), net.stem[0].weight.clone(), net.layer1[0].conv1.weight.clone()
    _train_step(net, torch.randn(2, 3, 32, 32))
    after = _bn_state(net)
    unchanged = all(torch.equal(before[k], after[k]) for k in before)
    assert unchanged is freeze  # without freezing, a training step moves the running statistics
    assert torch.equal(net.stem[0].weight, stem) is freeze
    assert not torch.equal(net.layer1[0].conv1.weight, layer1)  # the rest still trains
    assert net.training and all(not m.training for m in net.modules()
                                if isinstance(m, torch.nn.BatchNorm2d)) is freeze


def test_freeze_bn_only_applies_to_loaded_imagenet_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()  # stands in for the ImageNet file
    monkeypatch.setattr(backbones, "fetch_imagenet_weights", lambda arch: state)
    assert backbones.build_backbone("resnet18", True, freeze_bn=True).freeze_bn
    assert not backbones.build_backbone("resnet18", False, freeze_bn=True).freeze_bn  # from scratch: BN learns
    assert not backbones.build_backbone("resnet18", True, freeze_bn=False).freeze_bn
    small = backbones.build_backbone("small_cnn", True, shallow_stride=4, freeze_bn=True)
    assert all(m.training for m in small.train().modules())  # ignored: no ImageNet weights, stride 8 throughout


def test_resnet_layer1_at_stride_4() -> None:
    x = torch.randn(1, 3, 64, 64)
    four = backbones.build_backbone("resnet18", False, shallow_stride=4).eval()
    eight = backbones.build_backbone("resnet18", False, shallow_stride=8).eval()
    assert [tuple(f.shape[-2:]) for f in four(x)] == [(16, 16), (8, 8), (8, 8), (8, 8)]
    assert [tuple(f.shape[-2:]) for f in eight(x)] == [(8, 8)] * 4
    eight.load_state_dict(four.state_dict())  # same weights: the stride is not a parameter
    with torch.no_grad():
        assert torch.allclose(torch.nn.functional.avg_pool2d(four(x)[0], 2), eight(x)[0])
    with pytest.raises(ValueError, match="shallow_stride"):
        backbones.ResNetFeatures("resnet18", shallow_stride=2)

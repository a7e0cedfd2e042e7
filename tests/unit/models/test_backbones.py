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

"""Pieces every trainer shares: the run preamble, data folders, output checks, seeding, threads, loaders,
option parsing, the SGD set-up, and the card, evaluation and save that end a run."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import random
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Generator
from typing import Any, TypeVar

import numpy as np
import torch

from ..classes import ClassSchema, load_schema
from ..device import select_device
from ..events import Progress
from .config import RunConfig, TrainConfig

C = TypeVar("C")


@dataclass(frozen=True)
class DataDirs:
    """A LUAD-HistoSeg style dataset: ``training/`` (labels in names) and optional ``val/`` and ``test/``."""

    training: Path
    val: Path | None
    test: Path | None


def resolve_data_dirs(data_dir: str | Path) -> DataDirs:
    """Accept the dataset root (with ``training/``) or a folder of training tiles itself.

    Raises:
        FileNotFoundError: the folder does not exist.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Training data folder {root} does not exist; give the dataset root (with "
                                "training/, val/, test/) or a folder of labelled tiles.")
    training = root / "training" if (root / "training").is_dir() else root
    base = root if training != root else root.parent

    def split(name: str) -> Path | None:
        from ..data.tiles import find_mask_layout

        p = base / name
        return p if find_mask_layout(p) is not None else None

    return DataDirs(training, split("val"), split("test"))


def check_out_dir(out_dir: str | Path, overwrite: bool) -> Path:
    """Refuse (before hours of training) to replace an existing model version unless asked to."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} already exists; choose a new model name (a new version) or pass "
                              "overwrite=True (--overwrite).")
    return out


def checkpoint_path_for(out_dir: str | Path) -> Path:
    """Where a run writing ``out_dir`` keeps its resumable checkpoint (beside it, removed on success)."""
    out = Path(out_dir)
    return out.parent / f"{out.name}.ckpt.pt"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator for the data loader's shuffling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads(num_threads: int | None) -> None:
    """Use ``num_threads`` CPU threads (default: all cores but keep it at most 4; other work shares the CPU)."""
    n = num_threads or int(os.environ.get("NAPARI_WSSS_THREADS", 0)) or min(4, os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))


def config_from_options(cls: type[C], options: dict[str, Any]) -> C:
    """Build a config dataclass from keyword options, naming unknown ones and the valid choices."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} options {unknown}; valid options: {sorted(names)}.")
    hints = typing.get_type_hints(cls)
    options = {k: check_option(k, v, hints[k]) for k, v in options.items()}
    cfg = cls(**options)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        v = getattr(cfg, f.name)
        if isinstance(v, list):  # JSON round trips turn tuples into lists
            setattr(cfg, f.name, tuple(v))
    return cfg


# Options that count or size something: 0 or less would divide by zero or silently write an untrained model.
AT_LEAST_ONE = ("epochs", "batch_size", "input_size", "distil_epochs", "distil_batch_size", "decoder_epochs",
                "seg_epochs")


def check_option(name: str, value: Any, tp: Any) -> Any:
    """``value`` as the config field ``name`` of type ``tp`` takes it (an int where a float goes), or a
    ValueError saying what was given and what is expected (``--set lr=abc`` would fail mid-training)."""
    kinds = [a for a in typing.get_args(tp) if a is not type(None)] if _is_union(tp) else [tp]
    if value is None and len(kinds) < (len(typing.get_args(tp)) if _is_union(tp) else 1):
        return value  # "X | None"
    for kind in kinds:
        ok = _as_kind(value, kind)
        if ok is not _NO:
            return _in_range(name, ok)
    expected = " or ".join(getattr(k, "__name__", str(k)) for k in kinds)
    raise ValueError(f"Option {name}={value!r}: expected {expected}, got {type(value).__name__} "
                     f"(e.g. --set {name}=<a {expected}>; see `napari-wsss train --help`).")


_NO = object()
# Options where a negative number (or a NaN) would be taken silently: a thread count of -1 became 1, a negative
# patience never stopped, a held-out share of 2 held out every tile.
AT_LEAST_ZERO = ("num_threads", "switch_every", "patience", "max_teacher_tiles", "min_epoch_crops", "crop_size",
                 "segmix_patch", "segmix_patience", "segmix_window", "weight_decay", "momentum", "glass_min_size",
                 "image_loss_weight", "dice_weight", "ce_weight", "correction_weight", "seed")
POSITIVE = ("lr", "segmix_min_patch")
SHARES = ("held_out_fraction",)  # [0, 1): holding out every tile leaves nothing to train on
UNIT = ("segmix_ratio", "segmix_max_ratio", "segmix_prob", "cam_norm_quantile")  # [0, 1]


def _in_range(name: str, value: Any) -> Any:
    """``value`` when it is in the range the option ``name`` can take, else a ValueError saying which."""
    flag = f"--{name.replace('_', '-')}"
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"Option {name}={value}: expected a finite number.")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return value
    if name in AT_LEAST_ONE and value < 1:
        raise ValueError(f"Option {name}={value}: expected at least 1 (e.g. {flag} 10).")
    if name in AT_LEAST_ZERO and value < 0:
        raise ValueError(f"Option {name}={value}: expected 0 or more.")
    if name in POSITIVE and value <= 0:
        raise ValueError(f"Option {name}={value}: expected a number above 0.")
    if name in SHARES and not 0 <= value < 1:
        raise ValueError(f"Option {name}={value}: expected a share from 0 up to (not including) 1, e.g. 0.2.")
    if name in UNIT and not 0 <= value <= 1:
        raise ValueError(f"Option {name}={value}: expected a number from 0 to 1.")
    return value


def _is_union(tp: Any) -> bool:
    return isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union


def _as_kind(value: Any, kind: Any) -> Any:
    """``value`` converted to ``kind`` where that loses nothing, else ``_NO``."""
    if kind is bool:
        return value if isinstance(value, bool) else _NO
    if kind is int:  # numpy scalars too (a widget's or a script's values)
        return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else _NO
    if kind is float:
        return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else _NO
    if kind is str:
        return value if isinstance(value, str) else _NO
    if typing.get_origin(kind) is tuple and isinstance(value, (list, tuple)):
        item = typing.get_args(kind)[0]
        out = [_as_kind(v, item) for v in value]
        return tuple(out) if _NO not in out else _NO
    return value if not isinstance(kind, type) or isinstance(value, kind) else _NO


@dataclass(frozen=True)
class RunSetup:
    """What a trainer's preamble hands to its body."""

    out_dir: Path
    dirs: DataDirs
    schema: ClassSchema
    device: torch.device
    generator: torch.Generator  # seeded: the data loader's shuffling


def start_run(cfg: RunConfig) -> tuple[torch.device, torch.Generator]:
    """Threads, seeds, then the device, once per run: the part of the preamble fine-tuning shares too."""
    cfg.hed()  # a bad augmentation setting fails now, not at the first batch
    set_threads(cfg.num_threads)
    gen = seed_everything(cfg.seed)
    return select_device(cfg.device), gen


def setup_training(cfg: TrainConfig, data_dir: str | Path, out_dir: str | Path, overwrite: bool) -> RunSetup:
    """Every trainer's preamble: check the schema, the output folder and the data folders, fetch ImageNet
    weights asked for (fail before any training), then :func:`start_run`. A CAM trainer's unset gating
    ``threshold`` becomes its schema's (``CamTrainConfig.gating_threshold``), so the card records a number."""
    schema = load_schema(cfg.schema)
    if hasattr(cfg, "gating_threshold"):
        cfg.threshold = cfg.gating_threshold(schema.name)
    out = check_out_dir(out_dir, overwrite)
    dirs = resolve_data_dirs(data_dir)
    if cfg.pretrained is True and cfg.backbone.startswith("resnet"):  # fetch (or fail) before reading any data
        from ..models.backbones import fetch_imagenet_weights

        fetch_imagenet_weights(cfg.backbone)
    device, gen = start_run(cfg)
    return RunSetup(out, dirs, schema, device, gen)


def training_tiles(dirs: DataDirs, schema: ClassSchema, labels_csv: str | Path | None, desc: str
                   ) -> Generator[Progress, None, tuple[list, int]]:
    """The labelled training tiles and their side length (what the card records for inference's scale)."""
    from ..data.tiles import list_training_tiles

    tiles = list_training_tiles(dirs.training, schema, labels_csv)
    if tiles and not any(np.asarray(t.labels).any() for t in tiles):  # nothing to learn: an untrained model
        raise ValueError(f"None of the {len(tiles)} training tiles in {dirs.training} carries a class label (every "
                         f"label is 0 for {', '.join(schema.foreground_names)}); name the tiles with their labels, "
                         "e.g. 'tile-[1 0 0 1].png', or give --labels-csv.")
    tile_size = tile_size_of(tiles[0].path)
    yield Progress(0, None, f"{desc}: reading {len(tiles)} training tiles")
    return tiles, tile_size


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, generator: torch.Generator,
                shuffle: bool = True) -> torch.utils.data.DataLoader:
    """In-process loader (tiles are in memory; worker processes would only fight for the 2 cores)."""
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("No training tiles found; check the training folder and its file names.")
    return torch.utils.data.DataLoader(dataset, batch_size=min(batch_size, n), shuffle=shuffle,
                                       drop_last=n >= batch_size, generator=generator, num_workers=0)


def label_loader(tiles: list, cfg: TrainConfig, batch_size: int, generator: torch.Generator
                 ) -> torch.utils.data.DataLoader:
    """Batches of (image, image-level labels) of ``tiles`` at ``cfg.input_size``, augmented as ``cfg`` says:
    the data of every trainer that learns from image labels, so they all see the same pixels. Tiles are shown
    at the working scale the card will record (``input_size / tile size``, the tile size of
    :func:`training_tiles`); tiles of another size are rescaled by it and cropped (``TileLabelDataset``)."""
    from ..data.datasets import TileLabelDataset
    from ..models.card import IMAGENET_MEAN, IMAGENET_STD

    ds = TileLabelDataset(tiles, cfg.input_size, IMAGENET_MEAN, IMAGENET_STD, flips=cfg.flips, rotate=cfg.rotate,
                          seed=cfg.seed, hed=cfg.hed(), tile_size=tile_size_of(tiles[0].path) if tiles else None)
    return make_loader(ds, batch_size, generator)


def split_param_groups(model: torch.nn.Module, new_params: list[torch.nn.Parameter], lr: float,
                       weight_decay: float, new_mult: float = 10.0, bias_mult: float = 20.0) -> list[dict]:
    """SGD groups: backbone at ``lr``; new layers' weights at ``new_mult * lr``, their 1-D parameters
    (biases, HFRM scalars) at ``bias_mult * lr`` without weight decay (the paper code's grouping)."""
    new_ids = {id(p) for p in new_params}
    old = [p for p in model.parameters() if id(p) not in new_ids and p.requires_grad]
    new_w = [p for p in new_params if p.ndim > 1]
    new_b = [p for p in new_params if p.ndim <= 1]
    groups = [{"params": old, "lr": lr, "weight_decay": weight_decay},
              {"params": new_w, "lr": lr * new_mult, "weight_decay": weight_decay},
              {"params": new_b, "lr": lr * bias_mult, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def sgd(model: torch.nn.Module, cfg: TrainConfig, lr: float | None = None) -> torch.optim.SGD:
    """SGD over :func:`split_param_groups` of ``model.new_parameters()`` with ``cfg``'s momentum, decay and
    multipliers; ``lr`` overrides ``cfg.lr`` (the multi-stage segmentation network's ``seg_lr``)."""
    lr = cfg.lr if lr is None else lr
    groups = split_param_groups(model, model.new_parameters(), lr, cfg.weight_decay, cfg.new_lr_mult,
                                cfg.bias_lr_mult)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def tile_size_of(path: Path) -> int:
    """Side length of a (square) tile file, read from its header."""
    from PIL import Image

    with Image.open(path) as im:
        return int(max(im.size))


def evaluate_splits(segmenter: Any, card: Any, dirs: Any, should_stop: Any):  # noqa: ANN201
    """Evaluate a freshly trained segmenter on the val and test folders that exist; metrics go into the card.

    A generator (progress per tile, cancellable), shared by every trainer before it saves its version.
    """
    from .. import evaluation

    for split, folder in (("val", dirs.val), ("test", dirs.test)):
        if folder is not None:
            card.metrics[split] = yield from evaluation.evaluate_folder(segmenter, folder, should_stop=should_stop)


def state_on_cpu(model: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """Detached CPU copy of a model's state dict (what a model version stores), keys optionally prefixed."""
    return {f"{prefix}{k}": v.detach().cpu() for k, v in model.state_dict().items()}


def train_metrics(seconds: float | dict[str, float], epoch_losses: list[float], n_tiles: int,
                  **more: Any) -> dict[str, Any]:
    """A new version's training metrics, rounded as every card shows them; ``seconds`` per stage (a dict) adds
    ``stage_seconds`` and sums them; ``more`` goes before ``n_train_tiles``."""
    out: dict[str, Any] = {}
    if isinstance(seconds, dict):
        out["train_seconds"] = round(sum(seconds.values()), 1)
        out["stage_seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    else:
        out["train_seconds"] = round(seconds, 1)
    return {**out, "epoch_losses": [round(x, 4) for x in epoch_losses], **more, "n_train_tiles": n_tiles}


def version_card(method: str, cfg: TrainConfig, schema: ClassSchema, tile_size: int, data_dir: str | Path,
                 out_dir: Path, command: str, config: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None) -> Any:
    """The ``ModelCard`` of a version trained from ``data_dir``: ``cfg`` (with ``config`` entries added or
    replaced) plus the tile size and the scale inference applies, so the version rebuilds and reruns."""
    from ..data.scale import working_scale
    from ..models.card import IMAGENET_MEAN, IMAGENET_STD, ModelCard

    return ModelCard(
        method=method, backbone=cfg.backbone, schema=schema.to_dict(), input_size=cfg.input_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        config={**cfg.to_dict(), **(config or {}), "tile_size": tile_size,
                "scale": working_scale(cfg.input_size, tile_size)},
        training_data=str(Path(data_dir).resolve()), metrics=metrics or {}, seed=cfg.seed, command=command,
        name=out_dir.name, stain=training_stain(data_dir),
    )


STAIN_SAMPLE = 256  # training tiles read for the card's stain entry: enough for stable means, bounded cost


def training_stain(data_dir: str | Path, max_tiles: int = STAIN_SAMPLE) -> dict[str, Any]:
    """The card's ``stain`` entry for a training folder, from up to ``max_tiles`` tiles spread evenly over it
    (glass excluded): ``stats`` (inference warns on images stained unlike them) and ``macenko`` (the reference
    of optional stain normalisation); {} without tissue."""
    from ..data.tiles import list_images, read_rgb
    from ..ops.stain import stain_statistics
    from ..ops.stain_norm import fit_macenko_reference, tissue_pixels

    root = Path(data_dir)
    folder = root / "training" if (root / "training").is_dir() else root
    try:
        files = list_images(folder)
    except (FileNotFoundError, ValueError):  # no tiles: nothing to describe (the trainer says so itself)
        return {}
    pick = np.unique(np.linspace(0, len(files) - 1, min(max_tiles, len(files))).round().astype(int))
    rng = np.random.default_rng(0)
    pixels: list[np.ndarray] = []  # a sample of each tile's tissue: the Macenko fit without keeping the tiles

    def tiles() -> Generator[np.ndarray, None, None]:
        for i in pick:
            img = read_rgb(files[i])
            pixels.append(tissue_pixels(img, rng, 4096)[None])
            yield img

    stats = stain_statistics(tiles())
    if not stats:
        return {}
    macenko = fit_macenko_reference(pixels)
    return {"stats": stats, **({"macenko": macenko} if macenko else {})}


def save_version(out_dir: Path, state: dict[str, torch.Tensor], card: Any, dirs: DataDirs, segmenter: Any,
                 should_stop: Any, overwrite: bool) -> Generator[Progress, None, Path]:
    """End of every trainer: evaluate ``segmenter`` (None: skip) into the card, write the version atomically,
    then drop the resume checkpoint (only now: a failed save leaves the run resumable). Returns ``out_dir``."""
    from ..models.card import save_model

    if segmenter is not None:
        yield from evaluate_splits(segmenter, card, dirs, should_stop)
    save_model(out_dir, state, card, overwrite=overwrite)
    checkpoint_path_for(out_dir).unlink(missing_ok=True)
    return out_dir

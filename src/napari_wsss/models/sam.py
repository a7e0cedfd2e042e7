"""Segment Anything: loading the user's checkpoint (never downloading one), an on-disk image-embedding cache,
and a prompt session that re-predicts masks without re-running the encoder.

The SAM weights are the user's file (vit_b / vit_l / vit_h from Meta's segment-anything release). Where it
is found, in order: the ``checkpoint`` argument (CLI ``--sam-checkpoint``, the widget's setting), then the
``NAPARI_WSSS_SAM_CHECKPOINT`` environment variable. The architecture is read from the file's own tensor
shapes, so a checkpoint of the wrong type is named as such instead of failing deep inside ``load_state_dict``.

Coordinates: images are (H, W, 3) uint8 RGB; points are (y, x) pixels (project convention) and boxes
(y0, x0, y1, x1); they are flipped to SAM's (x, y) here and nowhere else.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ENV_CHECKPOINT = "NAPARI_WSSS_SAM_CHECKPOINT"
ENV_MODEL_TYPE = "NAPARI_WSSS_SAM_MODEL_TYPE"
ENV_CACHE = "NAPARI_WSSS_SAM_CACHE"

MODEL_TYPES: dict[str, tuple[int, int]] = {"vit_b": (768, 12), "vit_l": (1024, 24), "vit_h": (1280, 32)}
"""Official SAM image encoders: model type -> (embedding width, depth)."""

OFFICIAL_FILES = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"}

_WHERE_TO_GET = (
    "Download an official checkpoint yourself from https://github.com/facebookresearch/segment-anything#model-checkpoints "
    f"(vit_b: {OFFICIAL_FILES['vit_b']}, 375 MB, is enough on a laptop) and point napari-wsss at it: set the "
    f"environment variable {ENV_CHECKPOINT}=/path/to/{OFFICIAL_FILES['vit_b']}, pass --sam-checkpoint PATH on the "
    "command line, or choose the file in the 'SAM refine' widget's checkpoint setting. napari-wsss never downloads it."
)


def resolve_checkpoint(checkpoint: str | os.PathLike | None = None) -> Path:
    """The SAM checkpoint file to use: ``checkpoint``, else ``$NAPARI_WSSS_SAM_CHECKPOINT``.

    Raises:
        FileNotFoundError: none configured, or the configured path does not exist (says where to get one).
    """
    source = "the given path"
    if not checkpoint:
        checkpoint, source = os.environ.get(ENV_CHECKPOINT) or None, f"${ENV_CHECKPOINT}"
    if not checkpoint:
        raise FileNotFoundError(f"No Segment Anything checkpoint is configured. {_WHERE_TO_GET}")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"The SAM checkpoint {path} (from {source}) does not exist. {_WHERE_TO_GET}")
    return path


@dataclass(frozen=True)
class SamArch:
    """A SAM architecture, as read from a state dict's tensor shapes."""

    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    window_size: int
    global_attn_indexes: tuple[int, ...]
    out_chans: int
    mask_in_chans: int
    decoder_dim: int
    decoder_depth: int
    decoder_mlp_dim: int
    num_multimask_outputs: int
    iou_head_depth: int
    iou_head_hidden_dim: int

    @property
    def model_type(self) -> str:
        """``vit_b`` / ``vit_l`` / ``vit_h`` for the official encoders, else ``custom-<width>x<depth>``."""
        for name, (width, depth) in MODEL_TYPES.items():
            if (self.embed_dim, self.depth) == (width, depth):
                return name
        return f"custom-{self.embed_dim}x{self.depth}"


def _count(state: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for k in state if (m := pat.match(k))})


def infer_arch(state: dict) -> SamArch:
    """Read a :class:`SamArch` from a SAM state dict. Raises KeyError when a needed tensor is missing."""
    proj = state["image_encoder.patch_embed.proj.weight"]
    embed_dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    grid = int(state["image_encoder.pos_embed"].shape[1])
    depth = _count(state, "image_encoder.blocks.")
    rel = state.get("image_encoder.blocks.0.attn.rel_pos_h")
    head_dim = int(rel.shape[1]) if rel is not None else 64
    global_idx, window = [], 14
    for i in range(depth):
        r = state.get(f"image_encoder.blocks.{i}.attn.rel_pos_h")
        if r is None:
            continue
        if int(r.shape[0]) == 2 * grid - 1:
            global_idx.append(i)
        else:
            window = (int(r.shape[0]) + 1) // 2
    mlp_hidden = int(state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
    return SamArch(
        img_size=grid * patch, patch_size=patch, embed_dim=embed_dim, depth=depth,
        num_heads=max(1, embed_dim // head_dim), mlp_ratio=mlp_hidden / embed_dim, window_size=window,
        global_attn_indexes=tuple(global_idx), out_chans=int(state["image_encoder.neck.0.weight"].shape[0]),
        mask_in_chans=int(state["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
        decoder_dim=int(state["mask_decoder.iou_token.weight"].shape[1]),
        decoder_depth=_count(state, "mask_decoder.transformer.layers."),
        decoder_mlp_dim=int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
        num_multimask_outputs=int(state["mask_decoder.mask_tokens.weight"].shape[0]) - 1,
        iou_head_depth=_count(state, "mask_decoder.iou_prediction_head.layers."),
        iou_head_hidden_dim=int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
    )


def build_sam(arch: SamArch) -> torch.nn.Module:
    """An untrained ``segment_anything.modeling.Sam`` of architecture ``arch`` (official decoder: 8 heads)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = arch.img_size // arch.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.depth, embed_dim=arch.embed_dim, img_size=arch.img_size, mlp_ratio=arch.mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=arch.num_heads, patch_size=arch.patch_size,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=arch.global_attn_indexes,
            window_size=arch.window_size, out_chans=arch.out_chans,
        ),
        prompt_encoder=PromptEncoder(embed_dim=arch.out_chans, image_embedding_size=(grid, grid),
                                     input_image_size=(arch.img_size, arch.img_size), mask_in_chans=arch.mask_in_chans),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=arch.num_multimask_outputs,
            transformer=TwoWayTransformer(depth=arch.decoder_depth, embedding_dim=arch.decoder_dim,
                                          mlp_dim=arch.decoder_mlp_dim, num_heads=8),
            transformer_dim=arch.decoder_dim, iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
    )
    return sam.eval()


@dataclass
class LoadedSam:
    """A SAM model with where it came from. ``model_id`` keys the embedding cache (same encoder = same id)."""

    model: Any
    arch: SamArch
    checkpoint: Path
    model_id: str

    @property
    def model_type(self) -> str:
        return self.arch.model_type


def _model_id(path: Path, arch: SamArch) -> str:
    st = path.stat()
    h = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{sorted(asdict(arch).items())}".encode())
    return f"{arch.model_type}-{h.hexdigest()[:12]}"


def load_sam(checkpoint: str | os.PathLike | None = None, model_type: str | None = None,
             device: Any = "cpu") -> LoadedSam:
    """Load a SAM checkpoint the user supplied (``weights_only``; nothing is downloaded).

    Args:
        checkpoint: file path; None -> ``$NAPARI_WSSS_SAM_CHECKPOINT``.
        model_type: ``vit_b`` / ``vit_l`` / ``vit_h`` to insist on that encoder, or None / ``"auto"``
            (default; also ``$NAPARI_WSSS_SAM_MODEL_TYPE``) to accept what the file holds.
        device: torch device for the model.
    Raises:
        FileNotFoundError: no checkpoint configured / the path does not exist (says where to get one).
        ValueError: the file is not a readable SAM checkpoint, or holds a different model type (names both).
    """
    path = resolve_checkpoint(checkpoint)
    model_type = model_type or os.environ.get(ENV_MODEL_TYPE) or "auto"
    if model_type != "auto" and model_type not in MODEL_TYPES:
        raise ValueError(f"Unknown SAM model type {model_type!r}; expected one of {sorted(MODEL_TYPES)} or 'auto'.")
    expected = f"a {model_type} SAM checkpoint" if model_type != "auto" else "a Segment Anything checkpoint"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of many kinds for truncated or foreign files
        raise ValueError(f"{path} cannot be read as {expected} ({type(e).__name__}: {str(e)[:200]}). The file is "
                         f"damaged or not a PyTorch checkpoint; download it again. {_WHERE_TO_GET}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # training checkpoints wrap the state dict
    if not isinstance(state, dict) or not any(str(k).startswith("image_encoder.") for k in state):
        raise ValueError(f"{path} is not {expected}: it holds no 'image_encoder.*' weights (found "
                         f"{type(state).__name__}{' with keys like ' + repr(list(state)[:3]) if isinstance(state, dict) else ''}). "
                         f"{_WHERE_TO_GET}")
    try:
        arch = infer_arch(state)
    except (KeyError, IndexError) as e:
        raise ValueError(f"{path} is an incomplete SAM checkpoint (missing {e}); download it again.") from None
    if model_type != "auto" and arch.model_type != model_type:
        raise ValueError(f"{path} holds a {arch.model_type} SAM (encoder width {arch.embed_dim}, depth {arch.depth}), "
                         f"but {model_type} (width {MODEL_TYPES[model_type][0]}, depth {MODEL_TYPES[model_type][1]}) "
                         f"was asked for. Choose the matching model type (--sam-model-type {arch.model_type if arch.model_type in MODEL_TYPES else 'auto'}) "
                         "or the matching checkpoint file.")
    sam = build_sam(arch)
    try:
        sam.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit a {arch.model_type} SAM ({str(e).splitlines()[0]}); "
                         "the file is damaged or from another SAM variant.") from None
    return LoadedSam(sam.to(device).eval(), arch, path, _model_id(path, arch))


# -- embedding cache --------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$NAPARI_WSSS_SAM_CACHE`` or ``~/.cache/napari-wsss/sam``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "napari-wsss" / "sam"


def image_key(image: np.ndarray, model_id: str) -> str:
    """sha1 of the image's bytes, shape and dtype, plus the encoder's model id."""
    image = np.ascontiguousarray(image)
    h = hashlib.sha1(f"{image.shape}|{image.dtype}|{model_id}|".encode())
    h.update(memoryview(image).cast("B"))
    return h.hexdigest()


@dataclass
class Embedding:
    """SAM image features (1, C, h, w) float32 with the sizes SamPredictor needs (both (H, W))."""

    features: np.ndarray
    input_size: tuple[int, int]
    original_size: tuple[int, int]


class EmbeddingCache:
    """Image embeddings on disk (``<root>/<model_id>/<key>.npz``) plus a small in-memory LRU.

    ``root=None`` keeps them in memory only.
    """

    def __init__(self, root: str | os.PathLike | None = None, memory_items: int = 8) -> None:
        self.root = Path(root) if root is not None else None
        self.memory_items = memory_items
        self._mem: OrderedDict[str, Embedding] = OrderedDict()
        self.hits = self.misses = 0

    def _path(self, key: str, model_id: str) -> Path | None:
        return None if self.root is None else self.root / model_id / f"{key}.npz"

    def get(self, key: str, model_id: str) -> Embedding | None:
        if key in self._mem:
            self._mem.move_to_end(key)
            self.hits += 1
            return self._mem[key]
        path = self._path(key, model_id)
        if path is not None and path.is_file():
            try:
                with np.load(path) as z:
                    emb = Embedding(z["features"], tuple(int(v) for v in z["input_size"]),
                                    tuple(int(v) for v in z["original_size"]))
            except (OSError, ValueError, KeyError):  # a damaged cache entry is recomputed, not fatal
                path.unlink(missing_ok=True)
            else:
                self._remember(key, emb)
                self.hits += 1
                return emb
        self.misses += 1
        return None

    def put(self, key: str, model_id: str, emb: Embedding) -> None:
        self._remember(key, emb)
        path = self._path(key, model_id)
        if path is not None:
            from ..atomic import atomic_save

            with atomic_save(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, features=emb.features, input_size=np.asarray(emb.input_size),
                         original_size=np.asarray(emb.original_size))

    def _remember(self, key: str, emb: Embedding) -> None:
        self._mem[key] = emb
        self._mem.move_to_end(key)
        while len(self._mem) > self.memory_items:
            self._mem.popitem(last=False)


class SamSession:
    """One SAM model + cache: ``set_image`` once (encoder, or a cache hit), then ``predict`` per prompt (decoder).

    ``sam.mask_decoder`` may be swapped for a fine-tuned one; the cache stays valid (the encoder is frozen).
    """

    def __init__(self, sam: LoadedSam, cache: EmbeddingCache | None = None) -> None:
        from segment_anything import SamPredictor

        self.sam = sam
        self.cache = cache if cache is not None else EmbeddingCache(None)
        self.predictor = SamPredictor(sam.model)
        self.key: str | None = None

    def embed(self, image: np.ndarray) -> Embedding:
        """(H, W, 3) uint8 -> its embedding (from the cache, else the encoder, then cached)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"SAM needs an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}.")
        key = image_key(image, self.sam.model_id)
        emb = self.cache.get(key, self.sam.model_id)
        if emb is None:
            self.predictor.set_image(image)
            emb = Embedding(self.predictor.features.detach().cpu().numpy().astype(np.float32),
                            tuple(self.predictor.input_size), tuple(self.predictor.original_size))
            self.cache.put(key, self.sam.model_id, emb)
        return emb

    def is_cached(self, image: np.ndarray) -> bool:
        """Whether ``image``'s embedding is current, in memory or on disk (no encoder run needed)."""
        key = image_key(np.asarray(image), self.sam.model_id)
        if key == self.key and self.predictor.is_image_set or key in self.cache._mem:
            return True
        path = self.cache._path(key, self.sam.model_id)
        return path is not None and path.is_file()

    def set_image(self, image: np.ndarray) -> None:
        """Make ``image`` current for :meth:`predict` (no work if it already is)."""
        key = image_key(np.asarray(image), self.sam.model_id)
        if key == self.key and self.predictor.is_image_set:
            return
        self.set_embedding(self.embed(image))
        self.key = key

    def set_embedding(self, emb: Embedding) -> None:
        p = self.predictor
        p.reset_image()
        p.features = torch.from_numpy(emb.features).to(self.sam.model.device)
        p.original_size, p.input_size = tuple(emb.original_size), tuple(emb.input_size)
        p.is_image_set = True

    def predict(self, points: np.ndarray | None = None, labels: np.ndarray | None = None,
                box: np.ndarray | None = None, multimask: bool | None = None) -> tuple[np.ndarray, float]:
        """Best mask for the prompts on the current image.

        Args:
            points: (N, 2) (y, x) pixels; labels: (N,) 1 positive / 0 negative (default all positive).
            box: (y0, x0, y1, x1) pixels.
            multimask: SAM's three-mask output, best by predicted IoU (default: only for a lone point).
        Returns:
            (H, W) bool mask and its predicted IoU.
        """
        if not self.predictor.is_image_set:
            raise RuntimeError("SamSession.predict: call set_image(image) first.")
        coords = lab = sam_box = None
        if points is not None and len(points):
            points = np.asarray(points, np.float32)
            coords = points[:, ::-1].copy()
            lab = np.ones(len(points), np.int64) if labels is None else np.asarray(labels, np.int64)
        if box is not None:
            b = np.asarray(box, np.float32)
            sam_box = np.array([b[1], b[0], b[3], b[2]], np.float32)
        if coords is None and sam_box is None:
            raise ValueError("SAM needs at least one point or a box as a prompt.")
        if multimask is None:
            multimask = sam_box is None and coords is not None and len(coords) == 1
        with torch.inference_mode():
            masks, scores, _ = self.predictor.predict(point_coords=coords, point_labels=lab, box=sam_box,
                                                      multimask_output=multimask)
        best = int(np.argmax(scores))
        return masks[best].astype(bool), float(scores[best])

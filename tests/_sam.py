"""A tiny Segment Anything (random weights) saved as a checkpoint file, for tests and benchmarks.

Same ``segment_anything.modeling`` classes as vit_b/l/h, smaller encoder (ViT depth 2, width 96) and, by
default, a 256 px input (embeddings 16x16) so tests run in milliseconds on CPU. The decoder keeps SAM's
official size (256-d, 2 layers), so decoder timings are representative of the real models.
"""

from __future__ import annotations

from pathlib import Path

import torch

from napari_wsss.models.sam import SamArch, build_sam


def tiny_arch(img_size: int = 256, embed_dim: int = 96, depth: int = 2, num_heads: int = 4) -> SamArch:
    return SamArch(img_size=img_size, patch_size=16, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                   mlp_ratio=4.0, window_size=14, global_attn_indexes=(depth - 1,), out_chans=256,
                   mask_in_chans=16, decoder_dim=256, decoder_depth=2, decoder_mlp_dim=2048,
                   num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256)


def write_tiny_sam(path: Path, seed: int = 0, **arch_kw) -> Path:
    """Build a random tiny SAM and save its state dict to ``path`` (like Meta's .pth files)."""
    torch.manual_seed(seed)
    sam = build_sam(tiny_arch(**arch_kw))
    # random (not zero) relative positions, so loading is a real test of the shapes read from the file
    for name, p in sam.named_parameters():
        if "rel_pos" in name:
            torch.nn.init.normal_(p, std=0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam.state_dict(), path)
    return path

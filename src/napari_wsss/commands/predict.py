"""``napari-wsss predict``: palette-PNG class maps for tiles or a folder; a zarr label pyramid for a slide; a
cohort of slides on a Dask cluster (``predict_cohort``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..inference.tiling import WINDOW_PIXELS  # larger images are segmented in overlapping windows
from . import predict_cohort


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment tiles into palette-PNG class maps, a slide into a zarr label "
                       "pyramid, or a cohort of slides on a Dask cluster",
                       description="One image, a folder of tiles or one slide as before; several slides, a folder of "
                       "slides, a glob or a CSV (column 'path', optional 'id') run as a cohort on a Dask cluster: "
                       "<out>/<slide>/labels.zarr + summary.json per slide and <out>/cohort.json; a rerun skips "
                       "finished slides.")
    p.add_argument("--model", help="model version folder, or a shipped model's name (napari-wsss info lists them; "
                   "default: chosen for the input as the Segment widget does: sshr-glas for real images whose names "
                   "carry no class labels, the demo for the sample data; the choice is printed)")
    p.add_argument("input", type=Path, nargs="+", help="an image file, a folder of tiles, or a slide (SVS, NDPI, MRXS, "
                   "SCN, BIF, Philips/OME/pyramidal TIFF); or, for a cohort, several slides, a folder of slides, a glob "
                   "or a CSV")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="output PNG (single image), folder, NAME.zarr (slide), or a cohort's output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs (never the input images themselves)")
    p.add_argument("--device", help="cpu, cuda, mps or auto")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--level", type=int, default=0, help="slides: pyramid level to segment (0 = full resolution)")
    p.add_argument("--confidence", action="store_true", help="also write <name>_confidence.png (0..255)")
    p.add_argument("--stain-normalise", action="store_true",
                   help="Macenko-normalise each image to the training data's stain (reference stored in the card)")
    p.add_argument("--stain-reference", type=Path,
                   help="with --stain-normalise: fit the reference on this image instead of the card's")
    p.add_argument("--method", help="insist the model is of this method (e.g. cam_sam); default: what its card says")
    p.add_argument("--sam-checkpoint", type=Path, help="cam_sam: your SAM checkpoint file (else "
                   "$NAPARI_WSSS_SAM_CHECKPOINT, else the path recorded in the model card)")
    p.add_argument("--sam-model-type", choices=["auto", "vit_b", "vit_l", "vit_h"],
                   help="cam_sam: SAM encoder the checkpoint must hold (default: the card's)")
    predict_cohort.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from ..data.slide import has_slide_only_suffix, is_slide_path
    from ..inference.segmenter import load_segmenter
    from ..models.card import load_card
    from ..models.sam import ENV_CHECKPOINT, ENV_MODEL_TYPE
    from ..resources import resolve_model

    model_dir = resolve_model(args.model) if args.model else _choose_model(args)
    if args.model:
        _warn_if_demo_on_real_images(args, model_dir)
    if args.method and load_card(model_dir).method != args.method:
        raise ValueError(f"{model_dir} is a {load_card(model_dir).method} model, not {args.method}; choose a "
                         f"{args.method} model version with --model.")
    if args.sam_checkpoint:  # the loader reads these (same as setting them in the shell)
        os.environ[ENV_CHECKPOINT] = str(args.sam_checkpoint)
    if args.sam_model_type:
        os.environ[ENV_MODEL_TYPE] = args.sam_model_type
    if args.batch_size < 1 or args.level < 0:
        raise ValueError(f"--batch-size {args.batch_size} / --level {args.level}: expected a batch of at least 1 "
                         "and a pyramid level of 0 or more (0 = full resolution).")
    if predict_cohort.wants_cohort(args):
        return predict_cohort.run_cohort_command(args, model_dir)
    if len(args.input) > 1:  # pragma: no cover  (wants_cohort takes every list of several)
        raise ValueError("several inputs are segmented as a cohort of slides only.")
    args.input = args.input[0]
    if not args.input.exists():
        raise FileNotFoundError(f"{args.input} does not exist; give an image file, a folder of tiles or a slide.")
    slide = args.input.is_file() and (is_slide_path(args.input) or has_slide_only_suffix(args.input))
    check_outputs(args.input, args.out, slide, args.overwrite)  # before the model loads: nothing is written yet
    seg = load_segmenter(model_dir, args.device)
    if args.stain_normalise:
        from ..inference.stain_normalise import with_stain_normalisation

        seg = with_stain_normalisation(seg, args.stain_reference)
    if slide:
        return _predict_slide(seg, args)
    return _predict_tiles(seg, args)


def _choose_model(args: argparse.Namespace) -> Path:
    """The model for the input when no --model was given, chosen as the Segment widget chooses it (real H&E got
    the synthetic LUAD demo silently); says which and why on stderr."""
    from ..model_choice import choose_for_input, describe_choice

    folder, card, why = choose_for_input(_inputs(args), args.method)
    args.notes = [*getattr(args, "notes", []), f"napari-wsss predict: {describe_choice(folder.name, card, why)}"]
    return folder


def _warn_if_demo_on_real_images(args: argparse.Namespace, model_dir: Path) -> None:
    """A named demo model on images without class names (real H&E, most likely): say so once, and which shipped
    model was trained on real tissue; the run goes on (the user chose)."""
    from ..model_choice import SHIPPED, files_origin, input_files, is_demo, shipped_versions
    from ..models.card import load_card

    if not is_demo(load_card(model_dir)) or files_origin(input_files(_inputs(args)))[0] != "plain":
        return
    real = [label.removesuffix(SHIPPED) for label, _, card in shipped_versions() if not is_demo(card)]
    args.notes = [*getattr(args, "notes", []),
                  f"napari-wsss predict: warning: {model_dir.name} is a DEMO trained on generated (synthetic) tiles, "
                  "not on real tissue, and these file names carry no class labels (real H&E?)"
                  + (f"; for real tissue use --model {real[0]}" if real else "") + "."]


def _inputs(args: argparse.Namespace) -> list[Path]:
    """The images a run segments, for choosing a model: a cohort's slides, else the one input (which must exist)."""
    if predict_cohort.wants_cohort(args):
        from ..data.slide_list import list_slides

        return [s.path for s in list_slides(args.input)] or list(args.input)
    if not Path(args.input[0]).exists():
        raise FileNotFoundError(f"{args.input[0]} does not exist; give an image file, a folder of tiles or a slide.")
    return list(args.input)


_FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".zarr", ".json", ".geojson")


def check_outputs(src: Path, out: Path, slide: bool, overwrite: bool) -> None:
    """Refuse an output that would replace the user's images or, without ``--overwrite``, earlier results.

    Raises:
        ValueError: the output is the input (or the input's own folder for a folder of tiles).
        FileExistsError: the output exists and ``overwrite`` is False.
    """
    from ..data.tiles import list_images

    src_r, out_r = src.resolve(), out.resolve()
    # An -o with a file suffix the input cannot produce became a folder of that name ("tcga.png/<slide>.zarr").
    suffix = out.suffix.lower()
    if slide and suffix in _FILE_SUFFIXES and suffix != ".zarr":
        raise ValueError(f"-o {out}: a slide is segmented into a zarr label pyramid, not a {suffix} file; give "
                         f"-o {out.with_suffix('.zarr')} (or a folder to hold {src.stem}.zarr).")
    if src.is_dir() and suffix in _FILE_SUFFIXES and not out.is_dir():
        raise ValueError(f"-o {out}: a folder of tiles gives one PNG class map per tile, into a folder; give a "
                         f"folder, e.g. -o {src.name}-masks.")
    if src.is_dir():
        if out_r == src_r:
            raise ValueError(f"-o {out} is the input folder: the masks would replace your images. Give another "
                             f"folder, e.g. -o {src.name}-masks.")
        targets = [out / f"{f.stem}.png" for f in list_images(src)]
    elif slide:
        zout = out if out.suffix == ".zarr" else out / f"{src.stem}.zarr"
        if zout.exists() and not zout.is_dir():
            raise FileExistsError(f"{zout} is a file, not an earlier result; give another -o NAME.zarr (the file is "
                                  "never replaced, even with --overwrite).")
        if zout.exists() and not overwrite:
            raise FileExistsError(f"{zout} already exists (an earlier result?); pass --overwrite to replace it, "
                                  "or give another -o NAME.zarr.")
        return
    else:
        targets = [out if out.suffix.lower() == ".png" else out / f"{src.stem}.png"]
    for t in targets:
        if t.resolve() == src_r or (src.is_dir() and t.resolve().parent == src_r):
            raise ValueError(f"{t} is one of your input images; give an output outside the input, e.g. "
                             f"-o {src.stem}-masks.")
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{len(existing)} output file(s) already exist ({existing[0]}...); pass --overwrite "
                              "to replace them, or give another -o.")


def _predict_slide(seg, args: argparse.Namespace) -> int:  # noqa: ANN001
    """A pyramidal slide -> zarr label pyramid (tiled, bounded memory, glass skipped)."""
    import numpy as np

    from ..data.slide import open_slide
    from ..events import run_to_end
    from ..inference.slide_segmentation import segment_slide
    from . import print_notes, print_progress

    out = args.out if args.out.suffix == ".zarr" else args.out / f"{args.input.stem}.zarr"
    with open_slide(args.input) as slide:
        print_notes(args)
        thumb = slide.levels[-1]  # the slide's stain, judged on its coarsest level (cheap)
        flagged = (_stain_flags(seg.card, [np.asarray(thumb)[..., :3]], [args.input])
                   if thumb.shape[0] * thumb.shape[1] <= WINDOW_PIXELS else [])
        res = run_to_end(segment_slide(seg, slide.levels, out, level=args.level, batch_size=args.batch_size,
                                           mpp=slide.mpp, objective=slide.objective, source=slide.info()),
                         print_progress)
    print(f"{res.windows_predicted} windows predicted, {res.windows_skipped} glass windows skipped",
          file=sys.stderr)
    _warn_stain(seg.card, flagged, 1)
    print(out)
    return 0


def _predict_tiles(seg, args: argparse.Namespace) -> int:  # noqa: ANN001
    """Tiles (a file or a folder) -> palette PNG class maps; same-size tiles are batched, large images windowed."""
    import numpy as np
    from PIL import Image

    from ..atomic import atomic_save
    from ..data.tiles import list_images, read_rgb, write_mask
    from ..events import Progress, run_to_end
    from ..inference.tiling import segment_image
    from . import print_notes, print_progress

    schema = seg.card.class_schema
    if args.input.is_dir():
        files = list_images(args.input)
        targets = [args.out / f"{f.stem}.png" for f in files]
    else:
        files = [args.input]
        targets = [args.out if args.out.suffix.lower() == ".png" else args.out / f"{args.input.stem}.png"]
    print_notes(args)  # the folder holds images: the run starts

    def write(dst: Path, class_map: np.ndarray, probs: np.ndarray) -> None:
        write_mask(dst, class_map, schema)
        if args.confidence:
            conf = (probs.max(0) * 255 + 0.5).astype(np.uint8)
            with atomic_save(dst.with_name(f"{dst.stem}_confidence.png")) as tmp:
                Image.fromarray(conf).save(tmp, format="PNG")

    done = 0
    flagged: list[tuple[str, str]] = []
    normaliser = getattr(seg, "normaliser", None)  # --stain-normalise: tiles are normalised whole, not per window
    seg = getattr(seg, "segmenter", seg)
    bad: list[tuple[Path, str]] = []  # files that could not be read: skipped, named at the end, exit code 2
    for i in range(0, len(files), args.batch_size):
        batch, dsts, names = [], [], []
        for f, dst in zip(files[i : i + args.batch_size], targets[i : i + args.batch_size]):
            try:
                batch.append(read_rgb(f))
            except (OSError, ValueError, MemoryError) as e:
                bad.append((f, str(e) or type(e).__name__))
                continue
            dsts.append(dst)
            names.append(f)
        if not batch:
            continue
        if normaliser is not None:  # once here, so the stain check judges what the model sees
            batch = [normaliser(b) for b in batch]
        flagged += _stain_flags(seg.card, batch, names)
        if len({b.shape for b in batch}) == 1 and batch[0].shape[0] * batch[0].shape[1] <= WINDOW_PIXELS:
            pred = seg.predict(np.stack(batch), batch_size=args.batch_size)
            for n, dst in enumerate(dsts):
                write(dst, pred.class_map[n], pred.probs[n])
        else:  # mixed sizes or large images: one at a time, large ones in blended windows
            for img, dst in zip(batch, dsts):
                pred = run_to_end(segment_image(seg, img, batch_size=args.batch_size))
                write(dst, pred.class_map[0], pred.probs[0])
        done += len(batch)
        print_progress(Progress(done, len(files), "predicting"))
    print(file=sys.stderr)
    _warn_stain(seg.card, flagged, len(files))
    if bad:
        print(f"napari-wsss predict: error: {len(bad)} of {len(files)} image(s) could not be read and were skipped "
              f"(no mask written for them): " + "; ".join(f"{f.name} ({why})" for f, why in bad[:5])
              + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
              + (". The other masks were written; replace or remove those files and predict them again."
                 if len(bad) < len(files) else ". Nothing was written; give H&E images (RGB)."),
              file=sys.stderr)
    if done:
        print(targets[0] if len(targets) == 1 else args.out)
    return 2 if bad else 0


def _stain_flags(card, images: list, files: list[Path]) -> list[tuple[str, str]]:  # noqa: ANN001
    """(file name, reason) of the images stained unlike the model's training data (ops.stain.out_of_depth);
    nothing for models whose card holds no stain statistics (the shipped sshr-default)."""
    from ..ops.stain import out_of_depth

    stats = card.stain.get("stats")
    if not stats:
        return []
    reasons = ((f.name, out_of_depth(img, stats)) for img, f in zip(images, files))
    return [(name, r) for name, r in reasons if r]


def _warn_stain(card, flagged: list[tuple[str, str]], n_images: int) -> None:  # noqa: ANN001
    if flagged:
        from ..ops.stain import out_of_depth_message

        print(out_of_depth_message(flagged, n_images, card.name or "the model"), file=sys.stderr)

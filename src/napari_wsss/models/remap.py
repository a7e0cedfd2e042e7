"""A model version re-expressed in another class schema by choosing, for each new class, one class it predicts.

A pathologist with a model of other classes (the LUAD demo: tumour epithelium, stroma, ...) and data of a new
schema (colon glands) can start from it instead of from nothing: ``gland <- TE``, ``non-gland <- TAS``. For CAM
networks each class is one output channel of every 1x1 CAM head, so the new version keeps those channels in the
new order; everything else (backbone, HFRM, scale, normalisation) is unchanged. Fine-tuning then adapts it.
"""

from __future__ import annotations

from pathlib import Path

from ..classes import ClassSchema
from .card import load_card, load_weights, save_model

# methods whose per-class outputs are the channels of ``heads.<i>.weight`` (N_classes, C, 1, 1)
REMAPPABLE = ("sshr",)


def remap_version(model_dir: str | Path, out_dir: str | Path, schema: ClassSchema, mapping: dict[str, str],
                  overwrite: bool = False) -> Path:
    """Write ``out_dir``: the version at ``model_dir`` predicting ``schema``'s classes.

    Args:
        mapping: new foreground class name -> the model's class name whose output it takes; every foreground
            class of ``schema`` must be mapped (background stays the glass rule).
    Raises:
        ValueError: a method whose outputs cannot be remapped, an unmapped or unknown class.
    """
    card = load_card(model_dir)
    if card.method not in REMAPPABLE:
        raise ValueError(f"{model_dir} is a {card.method} model; remapping classes works for {list(REMAPPABLE)} "
                         "(one CAM channel per class). Train or fine-tune a model of the new classes instead.")
    old = card.class_schema
    missing = [n for n in schema.foreground_names if n not in mapping]
    if missing:
        raise ValueError(f"No source class for {missing}; map every class of {schema.name} to one of "
                         f"{old.foreground_names}, e.g. --map {missing[0]}={old.foreground_names[0]}.")
    unknown = [n for n in mapping if n not in schema.foreground_names]
    if unknown:
        raise ValueError(f"{unknown} are not classes of {schema.name} ({schema.foreground_names}).")
    rows = [old.index_of(mapping[n]) for n in schema.foreground_names]  # KeyError names the model's classes
    if any(r >= old.n_foreground for r in rows):
        raise ValueError(f"The background class cannot be a source; choose among {old.foreground_names}.")
    state = dict(load_weights(model_dir))
    heads = [k for k in state if k.startswith("heads.") and k.endswith(".weight")]
    if not heads:
        raise ValueError(f"{model_dir}: no CAM head weights (heads.<i>.weight) in weights.pt.")
    for k in heads:
        state[k] = state[k][rows].clone()
    new = load_card(model_dir)
    new.schema = schema.to_dict()
    new.parent = card.name or Path(model_dir).name
    new.name = Path(out_dir).name
    new.metrics = {}
    new.training_data = (f"{card.training_data} -- remapped to {schema.name}: "
                         + ", ".join(f"{n} <- {mapping[n]}" for n in schema.foreground_names))
    return save_model(out_dir, state, new, overwrite=overwrite)

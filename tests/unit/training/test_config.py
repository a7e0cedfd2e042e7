"""The trainers' configs keep their field names, defaults and card values (``card.config`` is ``to_dict()``).

The expected dicts are written out on purpose: a field renamed, dropped, added or given another default (in a
trainer or in the shared bases of ``training/config.py``) must fail here, since CLI ``--set``, the widgets and
saved cards use these names. They were taken from the configs before the shared bases existed.
"""

import json

import pytest
import torch

from napari_wsss.classes import get_schema
from napari_wsss.training import common
from napari_wsss.training.cam_sam import CamSamConfig
from napari_wsss.training.ifkd import FinetuneConfig
from napari_wsss.training.mil import MILConfig
from napari_wsss.training.multistage import MultistageConfig
from napari_wsss.training.sshr import SSHRConfig

_SEGMIX_PCM = {"threshold": None, "segmix": False, "segmix_patch": 0, "segmix_ratio": 0.25, "segmix_min_patch": 8,
               "segmix_max_ratio": 0.5, "segmix_patience": 3, "segmix_pacing": "epoch", "segmix_window_epochs": 0.5,
               "segmix_window": 20, "segmix_signal": "loss", "segmix_ratio_signal": "accuracy", "segmix_prob": 0.5,
               "segmix_labels": "hard", "pcm": False, "pcm_kind": "parameter_free", "pcm_weight": None, "pcm_mode": "relu", "pcm_scale": 0.5,
               "cam_norm_quantile": 0.0,
               "fill_holes": [], "tta_flips": False}
_TRAIN = {"backbone": "small_cnn", "schema": "luad", "input_size": 224, "lr": 0.01, "momentum": 0.9,
          "weight_decay": 0.0005, "new_lr_mult": 10.0, "bias_lr_mult": 20.0, "flips": True, "rotate": False,
          "pretrained": "auto", "seed": 0, "num_threads": None, "device": None, "glass_min_size": 64, "hed_scale": 0.0, "hed_shift": 0.0}

DEFAULTS = {
    SSHRConfig: {**_TRAIN, **_SEGMIX_PCM, "epochs": 21, "batch_size": 20, "loss_weights": [0.1, 0.15, 0.25, 0.5],
                 "fuse_weights": [0.0, 0.6, 0.2, 0.2], "hfrm": True, "kernel_size": 15, "dropout": 0.5,
                 "pcm_inference": True, "calibrate": True, "shallow_stride": 4, "freeze_bn": True},
    MILConfig: {**_TRAIN, "epochs": 10, "batch_size": 16, "fuse_weights": [0.3, 0.3, 0.4], "dropout": 0.1},
    CamSamConfig: {**_TRAIN, **_SEGMIX_PCM, "epochs": 10, "batch_size": 16, "adl_stages": [3, 4],
                   "adl_drop_rate": 0.75, "adl_gamma": 0.8, "enhanced": True, "hf_mode": "adapter", "hf_cutoff": 0.05,
                   "cam_threshold": 0.5, "n_points": 50, "consistency": 0.9, "rounds": 3, "decoder_epochs": 1,
                   "decoder_lr": 1e-05, "sam_checkpoint": None, "sam_model_type": "auto", "sam_cache_dir": None,
                   "loss_weights": [1.0], "pcm_kind": "parameter_free"},
    # None / 0 / "": the student's default (FinetuneConfig.resolved)
    FinetuneConfig: {"epochs": 8, "batch_size": 8, "lr": None, "backbone_lr_mult": None, "weight_decay": 1e-05,
                     "held_out_fraction": 0.2, "max_teacher_tiles": 48, "switch_every": 3,
                     "switch_margin": 0.02, "swap_on_switch": True,
                     "patience": None, "dice_weight": 1.0, "ce_weight": 1.0, "correction_weight": 1.0,
                     "image_loss_weight": 0.5, "student": "dense", "student_init": "base", "crop_size": 0,
                     "keep": "", "min_epoch_crops": 0, "anchor_weight": 0.0, "interpolate": None,
                     "freeze_bn": False, "refit": None,
                     "flips": True, "seed": 0, "num_threads": None,
                     "device": None, "hed_scale": 0.0, "hed_shift": 0.0},
}
DEFAULTS[MultistageConfig] = {**DEFAULTS[SSHRConfig], "hfrm": False, "seg_head": "fcn", "seg_epochs": None,
                              "seg_lr": None, "init_from_cam": True, "keep_pseudo_masks": False}

# The same options for every trainer (what the CLI and the train widget pass); fine-tuning takes no data options.
OPTIONS = {"epochs": 2, "batch_size": 4, "lr": 0.05, "weight_decay": 1e-4, "flips": False, "seed": 3,
           "num_threads": 1, "device": "cpu"}
TRAIN_OPTIONS = {**OPTIONS, "input_size": 32, "rotate": True, "pretrained": False, "backbone": "small_cnn",
                 "schema": "luad"}


def _same(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    assert got == expected
    # json also tells True from 1 and 1.0 from 1 (a card stores them so)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


@pytest.mark.parametrize("cls", list(DEFAULTS), ids=lambda c: c.__name__)
def test_defaults_unchanged(cls):
    _same(cls().to_dict(), DEFAULTS[cls])


@pytest.mark.parametrize("cls", list(DEFAULTS), ids=lambda c: c.__name__)
def test_options_land_in_the_same_card_values(cls):
    options = OPTIONS if cls is FinetuneConfig else TRAIN_OPTIONS
    cfg = common.config_from_options(cls, dict(options))
    _same(cfg.to_dict(), {**DEFAULTS[cls], **options})


def test_sshr_and_mil_card_configs_explicit():
    """Written out in full for the two default trainers, so no helper above can hide a change."""
    sshr = common.config_from_options(SSHRConfig, dict(TRAIN_OPTIONS)).to_dict()
    _same(sshr, {
        "backbone": "small_cnn", "schema": "luad", "input_size": 32, "epochs": 2, "batch_size": 4, "lr": 0.05,
        "momentum": 0.9, "weight_decay": 0.0001, "new_lr_mult": 10.0, "bias_lr_mult": 20.0,
        "loss_weights": [0.1, 0.15, 0.25, 0.5], "fuse_weights": [0.0, 0.6, 0.2, 0.2], "threshold": None,
        "hfrm": True, "kernel_size": 15, "dropout": 0.5, "flips": False, "rotate": True, "segmix": False,
        "segmix_patch": 0, "segmix_ratio": 0.25, "segmix_min_patch": 8, "segmix_max_ratio": 0.5,
        "segmix_patience": 3, "segmix_pacing": "epoch", "segmix_window_epochs": 0.5, "segmix_window": 20,
        "segmix_signal": "loss", "segmix_ratio_signal": "accuracy", "segmix_prob": 0.5, "segmix_labels": "hard",
        "pcm": False, "pcm_kind": "parameter_free", "pcm_scale": 0.5,
        "pcm_weight": None, "pcm_mode": "relu", "pcm_inference": True, "pretrained": False, "calibrate": True,
        "shallow_stride": 4, "freeze_bn": True,
        "cam_norm_quantile": 0.0, "fill_holes": [], "tta_flips": False,
        "seed": 3, "num_threads": 1, "device": "cpu", "glass_min_size": 64, "hed_scale": 0.0, "hed_shift": 0.0})
    mil = common.config_from_options(MILConfig, dict(TRAIN_OPTIONS)).to_dict()
    _same(mil, {
        "backbone": "small_cnn", "schema": "luad", "input_size": 32, "epochs": 2, "batch_size": 4, "lr": 0.05,
        "momentum": 0.9, "weight_decay": 0.0001, "new_lr_mult": 10.0, "bias_lr_mult": 20.0,
        "fuse_weights": [0.3, 0.3, 0.4], "dropout": 0.1, "flips": False, "rotate": True, "pretrained": False,
        "seed": 3, "num_threads": 1, "device": "cpu", "glass_min_size": 64, "hed_scale": 0.0, "hed_shift": 0.0})


def test_json_lists_come_back_as_tuples():
    cfg = common.config_from_options(CamSamConfig, {"adl_stages": [2, 3], "loss_weights": [1.0]})
    assert cfg.adl_stages == (2, 3) and cfg.loss_weights == (1.0,)
    assert cfg.to_dict()["adl_stages"] == [2, 3]


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown MILConfig options \\['segmix'\\].*'dropout'"):
        common.config_from_options(MILConfig, {"segmix": True})


def test_setup_training_checks_folders_then_seeds(tiny_dataset, tmp_path):
    cfg = MILConfig(seed=5, num_threads=1, device="cpu")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "card.json").write_text("{}")
    with pytest.raises(FileExistsError):
        common.setup_training(cfg, tiny_dataset, taken, overwrite=False)
    with pytest.raises(FileNotFoundError):
        common.setup_training(cfg, tmp_path / "missing", tmp_path / "out", overwrite=False)
    run = common.setup_training(cfg, tiny_dataset, tmp_path / "out", overwrite=False)
    assert run.device == torch.device("cpu") and run.schema == get_schema("luad")
    assert run.dirs.training == tiny_dataset / "training" and run.out_dir == tmp_path / "out"
    assert torch.randint(0, 1000, (4,), generator=run.generator).tolist() == \
        torch.randint(0, 1000, (4,), generator=torch.Generator().manual_seed(5)).tolist()
    assert torch.get_num_threads() == 1  # the autouse fixture sets 2 again for the next test


def test_setup_training_takes_a_schema_file(tiny_dataset, tmp_path):
    from pathlib import Path

    from napari_wsss.classes import GLAS

    schema_file = Path(__file__).resolve().parents[3] / "schemas" / "colon-gland.json"
    run = common.setup_training(MILConfig(schema=str(schema_file), num_threads=1, device="cpu"), tiny_dataset,
                                tmp_path / "out", overwrite=False)
    assert run.schema == GLAS
    with pytest.raises(FileNotFoundError, match="does not exist"):
        common.setup_training(MILConfig(schema=str(tmp_path / "none.toml"), device="cpu"), tiny_dataset,
                              tmp_path / "out2", overwrite=False)


@pytest.mark.parametrize("values", [{"hed_scale": -0.1}, {"hed_shift": -0.01}, {"hed_scale": 1.0}])
def test_bad_stain_jitter_fails_before_training(values, tiny_dataset, tmp_path):
    cfg = common.config_from_options(MILConfig, {**values, "num_threads": 1, "device": "cpu"})
    with pytest.raises(ValueError, match="expected 0 <= hed_scale < 1 and hed_shift >= 0"):
        common.setup_training(cfg, tiny_dataset, tmp_path / "out", overwrite=False)
    assert not (tmp_path / "out").exists()

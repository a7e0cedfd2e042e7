"""IFKD fine-tuning from corrections: weights, targets, switch, a real (tiny) run, cancel, CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.events import Cancelled, run_to_end
from napari_wsss.models.card import load_card
from napari_wsss.ops.losses import ifkd_pixel_weights, weighted_pixel_ce
from napari_wsss.store import Project
from napari_wsss.training.ifkd import changed_by_hand, finetune, held_out_summary, swap_teacher_student
from napari_wsss.training.ifkd_data import build_targets

from ..models._tiles import make_tile

FAST = dict(epochs=2, batch_size=4, switch_every=1, patience=0, num_threads=2, device="cpu", min_epoch_crops=1)


@pytest.fixture(scope="module")
def tiny_sshr(tmp_path_factory, tiny_dataset):
    from napari_wsss.training.sshr import train_sshr

    out = tmp_path_factory.mktemp("models") / "tiny-sshr"
    return run_to_end(train_sshr(tiny_dataset, out, epochs=1, batch_size=8, input_size=64, kernel_size=3,
                                 pretrained="none", device="cpu", num_threads=2, evaluate=False))


def make_project(root: Path, n_tiles: int = 8, n_corrected: int = 3, n_accepted: int = 1,
                 shapes: list[tuple[int, int]] | None = None) -> Project:
    """A tile folder with its annotation project: some tiles corrected with their true mask, one accepted.

    ``shapes`` gives (H, W) per tile (cycled), for folders of mixed, non-square tiles as real ones are.
    """
    rng = np.random.default_rng(3)
    folder = root / "tiles"
    folder.mkdir(parents=True)
    truth = {}
    for i in range(n_tiles):
        img, mask, lab = make_tile(rng, 64)
        if shapes:
            h, w = shapes[i % len(shapes)]
            reps = (-(-h // 64), -(-w // 64))
            img, mask = np.tile(img, (*reps, 1))[:h, :w], np.tile(mask, reps)[:h, :w]
        name = f"p{i:02d}-[{' '.join(map(str, lab))}].png"
        Image.fromarray(img).save(folder / name)
        truth[Path(name).stem] = mask
    project = Project.open(folder, LUAD_HISTOSEG)
    project.register([{"key": k, "image": f"{k}.png"} for k in truth])
    for j, (key, mask) in enumerate(truth.items()):
        if j < n_corrected:
            touched = np.zeros(mask.shape, bool)
            touched[:, : mask.shape[1] // 2] = True
            project.save_correction(key, mask, touched)
        elif j < n_corrected + n_accepted:
            project.save_correction(key, mask, np.zeros(mask.shape, bool))
            project.set_status(key, "accepted")
    return project


def folder_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_weighted_ce_weights_favour_low_loss_pixels():
    loss = torch.tensor([[[0.1, 0.5], [2.0, 4.0]]])
    w = ifkd_pixel_weights(loss)
    flat = w.flatten()
    assert torch.all(flat[:-1] > flat[1:])  # lower loss -> higher weight
    assert float(w.mean()) == pytest.approx(1.0, rel=1e-5)  # per image, the weights average to 1
    # excluded pixels weigh 0 and do not dilute the others
    mask = torch.tensor([[[True, True], [False, False]]])
    wm = ifkd_pixel_weights(loss, mask)
    assert wm[0, 1].abs().sum() == 0 and float(wm[0, 0].sum()) == pytest.approx(2.0, rel=1e-5)
    # an image with no included pixel gives zeros, not NaN
    assert torch.all(ifkd_pixel_weights(loss, torch.zeros_like(mask)) == 0)


def test_weighted_ce_is_a_cross_entropy_to_the_teacher():
    teacher = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 0.0]]]])  # (2, 1, 1, 2)
    close, _ = weighted_pixel_ce(torch.tensor([[[[0.9, 0.1]]], [[[0.9, 0.1]]]]), teacher)
    far, _ = weighted_pixel_ce(torch.tensor([[[[0.1, 0.9]]], [[[0.1, 0.9]]]]), teacher)
    assert close.item() < far.item()


def test_corrected_pixels_override_the_teacher():
    teacher = np.zeros((4, 2, 3), np.float32)
    teacher[1] = 0.9  # the teacher says NEC everywhere
    mask = np.array([[0, 0, 3], [4, 1, 1]], np.uint8)
    full = np.array([[True, False, True], [True, False, False]])
    t = build_targets(teacher, mask, full)
    assert t[:, 0, 0].tolist() == [1, 0, 0, 0]  # corrected to TE: one-hot, full weight
    assert t[:, 0, 2].tolist() == [0, 0, 0, 1]  # corrected to TAS
    assert t[:, 1, 0].tolist() == [0, 0, 0, 0]  # corrected to background: no tissue class
    assert np.allclose(t[:, 0, 1], teacher[:, 0, 1]) and np.allclose(t[:, 1, 2], teacher[:, 1, 2])  # untouched
    # negatives against zeros: an image label without NEC removes the teacher's NEC
    t2 = build_targets(teacher, None, None, labels=np.array([1, 0, 0, 1]))
    assert np.all(t2[1] == 0)


def test_switch_swaps_parameters():
    torch.manual_seed(0)
    teacher, student = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    old_teacher = {k: v.clone() for k, v in teacher.state_dict().items()}
    best = {k: v.clone() + 1.0 for k, v in student.state_dict().items()}
    new = swap_teacher_student(teacher, student, best)
    for k in best:
        assert torch.equal(teacher.state_dict()[k], best[k]) and torch.equal(new[k], best[k])
        assert torch.equal(student.state_dict()[k], old_teacher[k])


def test_held_out_summary_warns_when_the_base_did_better():
    better = {"held_out": {"before": 0.5, "after": 0.6, "n_tiles": 2, "keys": ["t1", "t7"]}}
    worse = {"held_out": {"before": 0.6, "after": 0.55, "n_tiles": 2}}
    text = held_out_summary(better, "base")
    assert "0.500 with base -> 0.600 with the new version" in text and "WARNING" not in text
    # the pathologist's words: which tiles (reviewed: corrected or merely accepted), compared with their own masks
    assert "2 reviewed tiles (t1, t7)" in text and "agreement with your masks" in text
    assert "WARNING" in held_out_summary(worse, "sshr-default") and "sshr-default" in held_out_summary(worse, "sshr-default")
    assert "no held-out score" in held_out_summary({"held_out": {"n_tiles": 0, "before": None, "after": None}}, "b")


def test_finetune_writes_a_new_version(tmp_path, tiny_sshr):
    from napari_wsss.inference.segmenter import load_segmenter

    project = make_project(tmp_path)
    base_before = folder_digest(tiny_sshr)
    items_before = {it.key: (it.status, it.mask) for it in project.items()}
    progress = []
    out = run_to_end(finetune(project, tiny_sshr, options=FAST), progress.append)
    assert out == project.models_dir / "tiny-sshr-ft1" and project.model_versions() == [out]
    card = load_card(out)
    # the default student is a segmentation network on the base's backbone: an ifkd version naming its teacher
    assert card.method == "ifkd" and card.parent == "tiny-sshr" and card.config["teacher"] == "tiny-sshr"
    ft = card.config["finetune"]
    assert ft["student"] == "dense" and ft["student_started_from"] == "base version's backbone, new head"
    assert (ft["lr"], ft["backbone_lr_mult"]) == (1e-3, 1.0)  # a fresh head on a CAM network's backbone
    assert ft["anchor_weight"] == 0.0 and ft["freeze_bn"] is False  # L2-SP only when asked
    used = {c["key"]: c for c in ft["corrections"]}
    # the default (dense) checks on one held-out tile, then trains the version on all four
    assert ft["refit"] is True and len(used) == 4 and not any(c["held_out"] for c in used.values())
    assert sum(c["held_out_in_check"] for c in used.values()) == 1
    assert all(c["touched_pixels"] == 64 * 32 for c in used.values() if c["status"] == "corrected")
    assert ft["n_teacher_tiles"] == 4
    held = card.metrics["held_out"]
    assert held["n_tiles"] == 1 and 0 <= held["before"] <= 1 and 0 <= held["after"] <= 1
    assert len(held["history"]) == 2
    assert held["improved"] == (held["after"] > held["before"])
    assert any("held_out" in p.metrics for p in progress)
    seg = load_segmenter(out, "cpu")
    assert seg.predict(np.full((1, 64, 64, 3), 120, np.uint8)).class_map.shape == (1, 64, 64)
    assert folder_digest(tiny_sshr) == base_before  # the base version is untouched
    assert {it.key: (it.status, it.mask) for it in Project.load(project.root).items()} == items_before
    # a second run gets the next free name; an existing name is refused before any work
    with pytest.raises(FileExistsError):
        run_to_end(finetune(project, tiny_sshr, "tiny-sshr-ft1", options=FAST))
    # that version is already a segmentation network (as the shipped sshr-glas is): fine-tuning it copies it whole
    again = load_card(run_to_end(finetune(project, out, options=FAST))).config["finetune"]
    assert again["student_started_from"] == "copy of the base version (already a segmentation network)"


def test_cancel_mid_epoch_leaves_the_store_unchanged(tmp_path, tiny_sshr):
    project = make_project(tmp_path)
    before, base_before = folder_digest(project.root), folder_digest(tiny_sshr)
    seen = []

    def stop_after_first_batch() -> bool:
        return any("loss" in p.metrics for p in seen)

    with pytest.raises(Cancelled):
        run_to_end(finetune(project, tiny_sshr, options=dict(FAST, epochs=3, batch_size=2),
                            should_stop=stop_after_first_batch), seen.append)
    batches = [p for p in seen if "loss" in p.metrics]
    assert len(batches) == 1 and batches[0].step < batches[0].total / 3  # cancelled inside the first epoch
    assert folder_digest(project.root) == before
    assert folder_digest(tiny_sshr) == base_before
    assert not list(project.root.glob("models/*")) and not list(project.root.glob("**/.*partial"))


def test_pause_waits_between_batches(tmp_path, tiny_sshr):
    project = make_project(tmp_path)
    state = {"paused_checks": 0}

    def paused() -> bool:  # paused for the first few checks, then resumes
        state["paused_checks"] += 1
        return state["paused_checks"] < 4

    out = run_to_end(finetune(project, tiny_sshr, options=dict(FAST, epochs=1), paused=paused))
    assert out.is_dir() and state["paused_checks"] >= 4


def test_no_corrections_is_a_clear_error(tmp_path, tiny_sshr):
    project = make_project(tmp_path, n_corrected=0, n_accepted=0)
    with pytest.raises(ValueError, match="no corrected or accepted"):
        run_to_end(finetune(project, tiny_sshr, options=FAST))


def test_reviewed_slide_regions_get_their_own_message(tmp_path, tiny_sshr):
    """A pathologist who accepted regions of a whole slide was told to 'correct (or accept) some tiles first'."""
    project = Project.open(tmp_path / "slide.svs", LUAD_HISTOSEG, root=tmp_path / "slide.wsss")
    key = "r0_0_64_64_l0"
    project.register([{"key": key, "region": [0, 0, 64, 64, 0]}])
    project.save_prediction(key, np.zeros((64, 64), np.uint8), "tiny-sshr")
    project.set_status(key, "accepted")
    with pytest.raises(ValueError, match=r"holds 1 reviewed region\(s\) of the slide .*slide.svs, which is not there"):
        run_to_end(finetune(project, tiny_sshr, options=FAST))


def test_finetune_learns_from_reviewed_regions_of_a_whole_slide(tmp_path, tiny_sshr, pyramid_tiff):
    """Reviewed whole-slide regions (no file of their own) are read from the slide at their mask's level: before,
    a slide project could not be fine-tuned at all (walk-through on a real SVS, session 24)."""
    from napari_wsss.training.ifkd_data import RegionSource, corrected_items, item_source, read_tile

    project = Project.open(pyramid_tiff, LUAD_HISTOSEG)  # 512 x 384 random pixels, 3 levels
    regions = {"r0_0_128_128_l0": [0, 0, 128, 128, 0], "r128_0_256_128_l0": [128, 0, 256, 128, 0],
               "r0_128_256_384_l1": [0, 128, 256, 384, 1], "r256_0_512_256_l1": [256, 0, 512, 256, 1]}
    project.register([{"key": k, "region": r} for k, r in regions.items()])
    rng = np.random.default_rng(0)
    for i, (k, r) in enumerate(regions.items()):
        shape = ((r[2] - r[0]) >> r[4], (r[3] - r[1]) >> r[4])
        project.save_correction(k, rng.integers(0, 5, shape).astype(np.uint8), np.ones(shape, bool))
        if i == 3:
            project.set_status(k, "accepted")
    assert len(corrected_items(project)) == 4
    src = item_source(project, project.item("r0_128_256_384_l1"))
    assert isinstance(src, RegionSource)
    from napari_wsss.data.slide import open_slide

    slide = open_slide(pyramid_tiff)
    expected = slide.read_region(0, 64, 128, 192, 1)  # level 1 = level-0 coordinates / 2
    slide.close()
    assert np.array_equal(read_tile(src), expected)
    out = run_to_end(finetune(project, tiny_sshr, options=dict(FAST, epochs=1)))
    used = {c["key"] for c in load_card(out).config["finetune"]["corrections"]}
    assert used == set(regions)


def test_finetune_on_mixed_non_square_tiles(tmp_path, tiny_sshr):
    # real folders mix sizes (GlaS: 775x522 beside 581x442); this raised numpy's concatenation error before
    project = make_project(tmp_path, n_tiles=6, n_corrected=3, n_accepted=1,
                           shapes=[(96, 144), (70, 90), (64, 64)])
    out = run_to_end(finetune(project, tiny_sshr, options=dict(FAST, epochs=1, student="copy")))
    card = load_card(out)
    assert out.parent == project.root / "models" and card.parent == load_card(tiny_sshr).name
    assert card.method == "sshr" and card.config["finetune"]["student"] == "copy"  # the base's twin, its method
    assert (out / "weights.pt").is_file()


def test_finetune_a_mil_version_and_cli(tmp_path, tiny_dataset):
    from napari_wsss.cli import main
    from napari_wsss.training.mil import train_mil

    mil = run_to_end(train_mil(tiny_dataset, tmp_path / "mil", epochs=1, batch_size=8, input_size=64,
                               pretrained="none", device="cpu", num_threads=2, evaluate=False))
    project = make_project(tmp_path)
    rc = main(["finetune", "--project", str(project.root), "--base", str(mil), "--epochs", "1",
               "--batch-size", "4", "--device", "cpu", "--threads", "2", "--set", "min_epoch_crops=1",
               "--anchor", "0.5", "--interpolate", "0.7"])
    assert rc == 0
    out = project.models_dir / "mil-ft1"
    card = load_card(out)
    assert card.config["finetune"]["anchor_weight"] == 0.5  # --anchor sets the L2-SP pull
    assert card.config["finetune"]["interpolate"] == 0.7
    # a dense student on a MIL net's backbone has a new head: nothing of the base to mix it with
    assert card.config["finetune"]["mixed_with_base"].startswith("no")
    assert card.method == "ifkd" and card.parent == "mil" and card.metrics["held_out"]["n_tiles"] == 1
    assert card.config["teacher"] == "mil"
    assert "napari-wsss finetune" in card.command


def test_the_check_holds_out_only_tiles_changed_by_hand(tmp_path, tiny_sshr):
    """A tile accepted as predicted is the base's own map: the base would win the check by construction (seen in a
    walk-through: 1.000 -> 0.857 and a certain warning). Only painted tiles are held out; none painted, no check."""
    opts = dict(FAST, epochs=1, refit=False)
    for seed in range(3):  # whichever tile the draw would have put first
        project = make_project(tmp_path / f"s{seed}", n_corrected=1, n_accepted=3)
        card = load_card(run_to_end(finetune(project, tiny_sshr, options={**opts, "seed": seed})))
        painted = [it.key for it in project.items() if changed_by_hand(project, it)]
        assert len(painted) == 1 and card.metrics["held_out"]["keys"] == painted
    project = make_project(tmp_path / "none", n_corrected=0, n_accepted=3)
    card = load_card(run_to_end(finetune(project, tiny_sshr, options=opts)))
    assert card.metrics["held_out"]["n_tiles"] == 0
    assert "accepted as predicted" in held_out_summary(card.metrics, "tiny-sshr")


def test_refit_checks_on_held_out_tiles_then_learns_from_every_correction(tmp_path, tiny_sshr):
    """With ``refit`` the held-out verdict comes from a first fit; the version itself is trained on all the
    corrections (none wasted at small k), and its card says which tile the check held out."""
    project = make_project(tmp_path)
    progress = []
    out = run_to_end(finetune(project, tiny_sshr, options=FAST), progress.append)  # refit: the dense default
    card = load_card(out)
    ft = card.config["finetune"]
    used = {c["key"]: c for c in ft["corrections"]}
    assert ft["refit"] is True and len(used) == 4
    assert not any(c["held_out"] for c in used.values())  # every correction trained the version
    assert sum(c["held_out_in_check"] for c in used.values()) == 1
    held = card.metrics["held_out"]
    assert held["n_tiles"] == 1 and held["keys"] == [k for k, c in used.items() if c["held_out_in_check"]]
    assert held["version"].startswith("a refit") and len(held["history"]) == 2
    descs = {p.desc.split(":")[0] for p in progress if p.total}
    assert "checking on 1 tile kept out of training (run 1 of 2)" in descs
    assert "final fit on all 4 tiles you reviewed (run 2 of 2)" in descs
    # without refit the held-out tile never trains the version
    out2 = run_to_end(finetune(project, tiny_sshr, options={**FAST, "refit": False}))
    assert sum(c["held_out"] for c in load_card(out2).config["finetune"]["corrections"]) == 1
    summary = held_out_summary(card.metrics, "tiny-sshr")
    assert "trained again on every reviewed tile, that tile included" in summary
    assert "with a first training run" in summary and f"1 reviewed tile ({held['keys'][0]})" in summary
    assert "trained again" not in held_out_summary(load_card(out2).metrics, "tiny-sshr")


def test_one_progress_bar_over_the_whole_finetune(tmp_path, tiny_sshr, monkeypatch):
    """Walk-through on real GlaS images: the bar ran to 98 % in the held-out check, then started again from 0 for the
    refit on every correction (and read 2/2 at the teacher's maps before 2/2000); "epoch 1/8 · held-out mIoU 0.989"
    showed the base model's score as if epoch 1 had earned it; the loss shown was a single batch's (0.28-1.84)."""
    from napari_wsss.training import ifkd_loop

    # every epoch's student takes the teacher's place: the switch recomputes the maps, which must not move the bar back
    monkeypatch.setattr(ifkd_loop, "switch_margin", lambda per_tile, floor: -1.0)
    project = make_project(tmp_path)
    progress = []
    out = run_to_end(finetune(project, tiny_sshr, options=dict(FAST, epochs=3)), progress.append)
    fractions = [p.fraction for p in progress]
    assert None not in fractions and len({p.total for p in progress}) == 1  # one bar, known from the start
    assert all(b >= a for a, b in zip(fractions, fractions[1:])), fractions  # never backwards
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    check = [i for i, p in enumerate(progress) if "(run 1 of 2)" in p.desc]
    refit = [i for i, p in enumerate(progress) if "(run 2 of 2)" in p.desc]
    assert check and refit and max(check) < min(refit)
    assert progress[check[0]].desc.startswith("checking on 1 tile kept out of training (run 1 of 2)")
    assert progress[refit[0]].desc.startswith("final fit on all 4 tiles you reviewed (run 2 of 2)")
    assert 0.3 < fractions[refit[0]] < 0.7  # the two fits share the bar in proportion to their work
    assert any(p.desc.endswith("(run 1 of 2): epoch 1/3") for p in progress)
    assert any("switch 1" in p.desc for p in progress)
    # the teacher's maps are a step of the job, not a bar of their own that reads 100 %
    maps = [p.fraction for p in progress if "(run 1 of 2): training targets, the model's maps of" in p.desc]
    assert maps and max(maps) < 0.5
    # until an epoch is scored the only held-out score is the base model's, and it is named so
    first_epoch = [p for p in progress if p.desc.endswith("(run 1 of 2): epoch 1/3")]
    assert first_epoch and all("held_out" not in p.metrics and "held_out_base" in p.metrics for p in first_epoch)
    card = load_card(out)
    history = card.metrics["held_out"]["history"]
    scored = [p for p in progress if p.desc.endswith("(run 1 of 2): epoch 1/3 done")]
    assert round(scored[0].metrics["held_out"], 4) == history[0] and scored[0].metrics["epoch"] == 1
    assert scored[0].metrics["held_out_base"] == pytest.approx(card.metrics["held_out"]["before"])
    # the loss is the mean of the epoch so far: each epoch's last report is the epoch's loss the card records
    ends = [p for p in progress if "(run 2 of 2): epoch" in p.desc and p.desc.endswith("done")]
    assert [round(p.metrics["loss"], 4) for p in ends] == card.metrics["epoch_losses"]

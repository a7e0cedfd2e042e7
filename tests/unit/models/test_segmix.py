"""SegMix: the cell swap is a permutation of pixels, labels follow the cells' sources, schedulers step on
plateaus only, and their state survives a checkpoint."""

import pytest
import torch

from napari_wsss.models.segmix import FeedbackScheduler, SegMixScheduler, patch_sequence, ratio_sequence
from napari_wsss.ops.segmix import apply_mix, mix_batch, mixed_labels, plan_mix, source_weights
from napari_wsss.training.checkpoint import load_checkpoint, save_checkpoint


def _ids(n=4, c=2, h=32, w=32):
    """Images whose every value is unique, so where a pixel went can be read back."""
    return torch.arange(n * c * h * w, dtype=torch.float32).view(n, c, h, w)


@pytest.mark.parametrize("h,w,patch,ratio", [(32, 32, 8, 0.5), (32, 32, 16, 1.0), (30, 34, 8, 0.3), (32, 32, 32, 1.0)])
def test_swap_is_a_permutation_of_pixels(h, w, patch, ratio):
    x = _ids(4, 2, h, w)
    y = torch.eye(4)
    g = torch.Generator().manual_seed(0)
    xm, _, _ = mix_batch(x, y, patch, ratio, g)
    assert xm.shape == x.shape
    assert torch.equal(xm.flatten().sort().values, x.flatten().sort().values)
    # pixels keep their position inside the image (only the batch index changes) and channels stay together
    pos = (xm % (h * w)).long()
    assert torch.equal(pos, (x % (h * w)).long())
    src = (xm // (2 * h * w)).long()
    assert torch.equal(src[:, 0], src[:, 1])


def test_ratio_sets_number_of_swapped_cells_and_zero_is_identity():
    g = torch.Generator().manual_seed(1)
    src = plan_mix(5, 32, 32, 8, 0.25, g)  # 16 cells, 4 swapped positions
    moved = src != torch.arange(5)[:, None, None]
    assert moved.any(dim=0).sum() == 4 and moved.all(dim=0).sum() == 4  # derangement at each chosen cell
    x = _ids(3)
    assert torch.equal(mix_batch(x, torch.eye(3), 8, 0.0, g)[0], x)
    assert torch.equal(mix_batch(x[:1], torch.eye(3)[:1], 8, 1.0, g)[0], x[:1])  # one image: nothing to swap


def test_labels_come_from_the_cells_sources():
    n, h, w, patch = 4, 32, 32, 8
    x = _ids(n, 1, h, w)
    y = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    g = torch.Generator().manual_seed(3)
    xm, hard, soft = mix_batch(x, y, patch, 0.5, g)
    src = (xm[:, 0] // (h * w)).long()  # (N, H, W) source image of every pixel
    for i in range(n):
        present = src[i].unique()
        expect_hard = y[present].amax(dim=0).float()
        assert torch.equal(hard[i], expect_hard)
        share = torch.stack([(src[i] == s).float().mean() for s in range(n)])
        assert torch.allclose(soft[i], share @ y.float(), atol=1e-6)


def test_soft_labels_are_area_weighted_and_rows_sum_to_one():
    g = torch.Generator().manual_seed(4)
    src = plan_mix(3, 30, 30, 8, 1.0, g)  # 3x3 grid of 8 px + a 6 px remainder strip that stays home
    wts = source_weights(src, 8, 30, 30)
    assert torch.allclose(wts.sum(dim=1), torch.ones(3))
    assert (wts.diagonal() >= (900 - 576) / 900 - 1e-6).all()
    y = torch.eye(3)
    hard, soft = mixed_labels(y, wts)
    assert torch.allclose(soft.sum(dim=1), torch.ones(3))  # one class per source: shares sum to 1
    assert torch.equal(hard, (wts > 0).float())
    assert ((soft <= hard + 1e-6) & (soft >= 0)).all()


def test_bad_settings_are_explained():
    with pytest.raises(ValueError, match="patch"):
        mix_batch(_ids(2), torch.eye(2), 64, 0.5)
    with pytest.raises(ValueError, match="ratio"):
        mix_batch(_ids(2), torch.eye(2), 8, 1.5)
    with pytest.raises(ValueError, match="signal"):
        SegMixScheduler(16, 0.25, signal="auc")


def test_apply_mix_runs_on_non_square_grids():
    x = _ids(2, 3, 16, 40)
    src = torch.tensor([[[1, 0, 1, 0, 1]], [[0, 1, 0, 1, 0]]]).repeat(1, 2, 1)
    out = apply_mix(x, src, 8)
    assert torch.equal(out[0, :, :, :8], x[1, :, :, :8]) and torch.equal(out[0, :, :, 8:16], x[0, :, :, 8:16])


def test_sequences():
    assert patch_sequence(56, 8) == [56, 28, 14]
    assert patch_sequence(16, 16) == [16]
    assert ratio_sequence(0.25, 0.5) == [0.25, 0.375, 0.5]


def test_scheduler_steps_on_plateau_only():
    s = FeedbackScheduler([4, 2, 1], patience=2, window=1, mode="min")
    for v in (1.0, 0.8, 0.6, 0.5, 0.4):  # improving: never steps
        assert not s.observe(v)
    assert s.value == 4
    assert not s.observe(0.41)  # 1 bad window
    assert s.observe(0.40)  # 2 bad windows -> next value
    assert s.value == 2 and s.best is None and s.bad == 0
    assert not s.observe(0.9)  # new baseline after a change
    assert not s.observe(0.95) and s.observe(0.95)
    assert s.value == 1
    for v in (2.0, 2.0, 2.0, 2.0):  # last value: stays
        assert not s.observe(v)
    assert s.value == 1


def test_scheduler_windows_and_accuracy_mode():
    s = FeedbackScheduler([1, 2], patience=1, window=3, mode="max")
    assert not any(s.observe(v) for v in (0.5, 0.5, 0.5))  # first window: baseline 0.5
    assert not s.observe(0.9) and not s.observe(0.9)  # window not full yet
    assert not s.observe(0.9)  # mean 0.9 improves
    assert not s.observe(0.9) and not s.observe(0.9)
    assert s.observe(0.9)  # no improvement for 1 window -> step
    assert s.value == 2


def test_segmix_scheduler_moves_patch_down_and_ratio_up():
    m = SegMixScheduler(32, 0.25, min_patch=8, max_ratio=0.5, patience=2, window=2)
    x, y = torch.randn(4, 3, 64, 64), torch.eye(4)
    changes = 0
    for _ in range(40):
        xm, target, hard = m.mix(x, y)
        assert xm.shape == x.shape and torch.equal(target, hard)
        changes += m.observe(1.0)  # a flat loss: plateaus
    assert (m.patch, m.ratio) == (8, 0.5)
    assert changes == 2 and [h["patch"] for h in m.history] == [32, 16, 8]
    assert m.metrics() == {"segmix_patch": 8.0, "segmix_ratio": 0.5}
    m2 = SegMixScheduler(32, 0.25, patience=2, window=2)
    for v in range(40):
        m2.observe(10.0 / (v + 1))  # a falling loss: no step
    assert (m2.patch, m2.ratio) == (32, 0.25)


def test_accuracy_signal_uses_logits():
    m = SegMixScheduler(16, 0.25, patience=1, window=1, signal="accuracy")
    hard = torch.tensor([[1.0, 0.0]])
    m.observe(0.0, torch.tensor([[1.0, -1.0]]), hard)  # accuracy 1.0
    assert m.observe(0.0, torch.tensor([[-1.0, -1.0]]), hard)  # 0.5: worse -> step
    with pytest.raises(ValueError, match="accuracy"):
        m.observe(0.0)


def test_state_round_trips_through_a_checkpoint(tmp_path):
    m = SegMixScheduler(32, 0.25, patience=2, window=3, labels="soft", seed=5)
    x, y = torch.randn(4, 3, 32, 32), torch.eye(4)
    for v in (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.7, 0.6):
        m.mix(x, y)
        m.observe(v)
    net = torch.nn.Linear(2, 2)
    path = save_checkpoint(tmp_path / "c.pt", net, None, 1, 10, {"segmix": True}, {"segmix": m.state_dict()})
    state = load_checkpoint(path)  # weights_only=True inside
    m2 = SegMixScheduler(32, 0.25, patience=2, window=3, labels="soft", seed=0)
    m2.load_state_dict(state["extra"]["segmix"])
    assert (m2.patch, m2.ratio, m2.batches, m2.history) == (m.patch, m.ratio, m.batches, m.history)
    assert m2.patch_scheduler.state_dict() == m.patch_scheduler.state_dict()
    # the same plans from here on (generator state restored), and the same future steps
    a, b = m.mix(x, y), m2.mix(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for v in (0.7, 0.7, 0.7, 0.7, 0.7, 0.7):
        assert m.observe(v) == m2.observe(v)
    other = SegMixScheduler(64, 0.25, patience=2, window=3)
    with pytest.raises(ValueError, match="same SegMix settings"):
        other.load_state_dict(state["extra"]["segmix"])


def test_each_mixed_image_has_one_partner():
    g = torch.Generator().manual_seed(7)
    src = plan_mix(6, 64, 64, 8, 0.75, g)
    partners = set()
    for i in range(6):
        srcs = set(src[i].unique().tolist())
        assert i in srcs and len(srcs) == 2  # itself + one partner, whatever the ratio
        partners.add(next(iter(srcs - {i})))
    assert partners == set(range(6))  # partners form a permutation (a cycle): pixels are preserved


def _run(m, batches, loss=1.0, accuracy_logits=None):
    """Feed ``batches`` mixed-or-clean batches with a flat loss (and flat accuracy unless logits are given)."""
    x, y = torch.randn(4, 3, 32, 32), torch.eye(4)[:, :3]
    logits = torch.zeros(4, 3) if accuracy_logits is None else accuracy_logits
    for _ in range(batches):
        _, _, hard = m.mix(x, y)
        m.observe(loss, logits, hard)


def test_epoch_pacing_keeps_the_finest_setting_for_later_epochs():
    from napari_wsss.training.config import CamTrainConfig

    per_epoch = 800  # LUAD-sized: ~800 batches of 20 per epoch
    cfg = CamTrainConfig(segmix=True, input_size=224)
    m = SegMixScheduler.from_config(cfg, batches_per_epoch=per_epoch)
    assert m.patch_scheduler.window == 200  # half an epoch of mixed batches (prob 0.5)
    finest = (m.patch_scheduler.values[-1], m.ratio_scheduler.values[-1])
    _run(m, per_epoch)  # a flat signal: the worst case, a plateau in every window
    assert (m.patch, m.ratio) == (112, 0.25)  # no step at all in the first epoch
    _run(m, 9 * per_epoch)
    assert (m.patch, m.ratio) == finest  # but the curriculum completes within the paper's epochs
    old = SegMixScheduler.from_config(CamTrainConfig(segmix=True, input_size=224, segmix_pacing="batches",
                                                     segmix_ratio_signal="loss", segmix_prob=1.0),
                                      batches_per_epoch=per_epoch)
    _run(old, per_epoch)
    assert (old.patch, old.ratio) == finest  # the first implementation: finest within the first epoch
    with pytest.raises(ValueError, match="batches_per_epoch"):
        SegMixScheduler.from_config(cfg)
    with pytest.raises(ValueError, match="segmix_pacing"):
        SegMixScheduler.from_config(CamTrainConfig(segmix_pacing="steps"), batches_per_epoch=10)


def test_patch_and_ratio_schedulers_watch_separate_signals():
    m = SegMixScheduler(32, 0.25, min_patch=8, patience=1, window=1, signal="loss", ratio_signal="accuracy")
    hard = torch.tensor([[1.0, 0.0]])
    # loss flat, accuracy rising: only the patch scheduler sees a plateau
    for acc_logits in ([[-1.0, 1.0]], [[1.0, 1.0]], [[1.0, -1.0]]):  # accuracy 0, 0.5, 1
        m.mix(torch.randn(2, 3, 32, 32), torch.eye(2))
        m.observe(1.0, torch.tensor(acc_logits), hard)
    assert m.patch < 32 and m.ratio == 0.25
    # loss falling, accuracy flat: only the ratio scheduler moves
    n = SegMixScheduler(32, 0.25, patience=1, window=1, signal="loss", ratio_signal="accuracy")
    for loss in (3.0, 2.0, 1.0):
        n.observe(loss, torch.tensor([[1.0, 1.0]]), hard)
    assert n.patch == 32 and n.ratio > 0.25
    with pytest.raises(ValueError, match="ratio_signal"):
        SegMixScheduler(16, 0.25, ratio_signal="auc")


@pytest.mark.parametrize("prob", [0.3, 0.5])
def test_about_prob_of_the_batches_are_mixed_and_clean_ones_give_no_feedback(prob):
    m = SegMixScheduler(8, 0.5, prob=prob, seed=11, patience=10**6, window=1)
    x, y = _ids(4), torch.eye(4)
    mixed = 0
    for _ in range(1000):
        xm, target, hard = m.mix(x, y)
        if m.last_mixed:
            mixed += 1
        else:
            assert xm is x and target is y and hard is y  # a clean batch passes unchanged
        m.observe(1.0)
    assert abs(mixed / 1000 - prob) < 0.05  # binomial sd ~0.016: 3 sd
    assert (m.batches, m.mixed) == (1000, mixed)
    assert m.patch_scheduler.best == 1.0 and len(m.history) == 1
    with pytest.raises(ValueError, match="prob"):
        SegMixScheduler(8, 0.5, prob=1.5)


def test_clean_batch_draws_are_seeded_and_prob_one_mixes_every_batch():
    x, y = _ids(4), torch.eye(4)

    def draws(seed, prob):
        m = SegMixScheduler(8, 0.5, prob=prob, seed=seed)
        return [(m.mix(x, y), m.last_mixed)[1] for _ in range(50)]

    assert draws(3, 0.5) == draws(3, 0.5) and draws(3, 0.5) != draws(4, 0.5)
    assert all(draws(3, 1.0)) and not any(draws(3, 0.0))

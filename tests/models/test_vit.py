"""ViT: patching round-trips, shapes, attention maps, and that it learns digits."""
import pytest
import torch

from attnkit.zoo.data.digits import load_digit_splits, random_shift, translate
from attnkit.zoo.models.vit import ViT, ViTConfig, overlapping_patches, patchify, unpatchify
from attnkit.engine.resolve import resolve_config

DEBUG = dict(image_size=8, patch_size=2, n_layer=1, n_head=2, d_model=32, mlp_ratio=2, dropout=0.0)


@pytest.mark.parametrize("patch,channels,h,w", [(2, 1, 8, 8), (4, 1, 8, 8), (2, 3, 4, 6), (1, 2, 3, 3)])
def test_patchify_round_trips_and_cuts_raster_patches(patch, channels, h, w):
    images = torch.randn(3, channels, h, w)
    patches = patchify(images, patch)
    assert patches.shape == (3, (h // patch) * (w // patch), channels * patch * patch)
    assert torch.equal(unpatchify(patches, patch, channels, h, w), images)
    gw = w // patch
    for n in range(patches.shape[1]):  # patch n is the n-th p×p square in raster order, channel-major
        r, c = n // gw, n % gw
        square = images[:, :, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch]
        assert torch.equal(patches[:, n], square.reshape(3, -1))


def test_overlapping_patches_are_the_windows_centred_on_each_patch():
    images = torch.randn(3, 2, 8, 8)
    assert torch.equal(overlapping_patches(images, 2, 2), patchify(images, 2))  # kernel = patch: no overlap
    windows = overlapping_patches(images, 2, 4)
    assert windows.shape == (3, 16, 2 * 4 * 4)
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    for n in range(16):  # token n is patch (r, c): rows 2r-1..2r+2, columns 2c-1..2c+2, zero outside
        r, c = n // 4, n % 4
        assert torch.equal(windows[:, n], padded[:, :, 2 * r:2 * r + 4, 2 * c:2 * c + 4].reshape(3, -1))
    model = ViT(ViTConfig(**{**DEBUG, "patch_kernel": 4})).eval()
    assert model(images[:, :1]).shape == (3, 10) and model.patch_embed.in_features == 16
    with pytest.raises(ValueError, match="patch_kernel 3 must be patch_size 2 plus an even number"):
        ViTConfig(image_size=8, patch_size=2, patch_kernel=3)


def test_patch_size_must_divide_image():
    with pytest.raises(ValueError, match="patch"):
        patchify(torch.zeros(1, 1, 8, 8), 3)
    with pytest.raises(ValueError, match="patch_size"):
        ViTConfig(image_size=8, patch_size=3)


def test_forward_shapes_and_attention_maps():
    model = ViT(ViTConfig(**{**DEBUG, "n_layer": 2})).eval()
    x = torch.rand(5, 1, 8, 8)
    assert model(x).shape == (5, 10)
    maps = model.attention_maps(x)
    assert maps.shape == (2, 5, 2, 17, 17)  # (layers, B, heads, CLS + 16 patches, same)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 5, 2, 17))


def test_random_shift_moves_digits_without_cropping_them():
    images, _ = load_digit_splits()["train"]
    g = torch.Generator().manual_seed(0)
    shifted = random_shift(images[:16], 1, g)
    assert shifted.shape == (16, 8, 8) and shifted.dtype == images.dtype
    assert not torch.equal(shifted, images[:16])
    # Each image is an exact translate of its original by some (dy, dx) in [-1, 1]².
    padded = torch.nn.functional.pad(images[:16], (1, 1, 1, 1))
    for n in range(16):
        assert any(torch.equal(shifted[n], padded[n, dy:dy + 8, dx:dx + 8]) for dy in range(3) for dx in range(3))
    assert torch.equal(random_shift(images[:4], 0, g), images[:4])
    assert torch.equal(random_shift(images[:4], 1, g, p=0.0), images[:4])
    some = random_shift(images[:400], 1, g, p=0.3)
    moved = (some != images[:400]).flatten(1).any(1).float().mean()
    assert 0.15 < moved < 0.35  # 30% drawn, minus the 1/9 drawn as (0, 0)


def test_translate_moves_every_digit_by_the_same_offset_and_drops_what_falls_off():
    images = torch.arange(2 * 4 * 4, dtype=torch.uint8).reshape(2, 4, 4)
    assert torch.equal(translate(images, 0, 0), images)
    down = translate(images, 1, 0)  # one row down: row 0 empty, row r is the old row r - 1
    assert torch.equal(down[:, 1:], images[:, :-1]) and not down[:, 0].any()
    left = translate(images, 0, -2)  # two columns left
    assert torch.equal(left[:, :, :2], images[:, :, 2:]) and not left[:, :, 2:].any()
    assert torch.equal(translate(translate(images, 1, 1), -1, -1)[:, :3, :3], images[:, :3, :3])


def test_predict_averages_the_softmax_over_its_views():
    """Test-time augmentation is the mean of the single-view predictions of the translated digits."""
    from attnkit.zoo.tasks.vit import TTA_SHIFTS, predict

    torch.manual_seed(0)
    model = ViT(ViTConfig(**DEBUG)).eval()
    images, _ = load_digit_splits()["test"]
    images = images[:20]
    cpu = torch.device("cpu")
    views = [predict(model, translate(images, dy, dx), cpu) for dy, dx in TTA_SHIFTS]
    tta = predict(model, images, cpu, batch=7, shifts=TTA_SHIFTS)  # batches that do not divide 20
    torch.testing.assert_close(tta, torch.stack(views).mean(0))
    torch.testing.assert_close(tta.sum(-1), torch.ones(20))
    assert not torch.allclose(tta, views[0])  # the translates do change the answer of an untrained model


def test_splits_are_fixed_stratified_and_disjoint():
    splits = load_digit_splits()
    sizes = {k: len(v[1]) for k, v in splits.items()}
    assert sizes == {"train": 1257, "val": 180, "test": 360}
    assert torch.bincount(splits["test"][1]).min() >= 35  # every class in the test split
    flat = {k: {tuple(img.flatten().tolist()) for img in v[0]} for k, v in splits.items()}
    # sklearn's digits contain a few exact duplicates, so allow a handful of coincidences.
    assert len(flat["train"] & flat["test"]) <= 3


def test_vit_fits_a_batch_of_digits():
    """Gradients reach every part that matters: the debug ViT memorises 64 digits in 80 steps (chance: 10%)."""
    from attnkit.config import TrainConfig
    from attnkit.zoo.tasks.vit import ViTTask, predict

    task = ViTTask(resolve_config(TrainConfig(model="vit", flavor="debug")))
    images, labels = load_digit_splits()["train"]
    x, y = images[:64], labels[:64]
    model = ViTTask.build_model(task.model_config())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = {"images": x.float()[:, None] / 16, "labels": y}
    first = task.loss(model, batch).item()
    for _ in range(80):
        loss = task.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 < first
    assert (predict(model, x, torch.device("cpu")).argmax(-1) == y).float().mean() > 0.7

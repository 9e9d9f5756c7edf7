"""Image Transformer: the sampler's output, causality of every pattern, and locality of local2d."""
import math

import pytest
import torch

from attnkit.zoo.data.digits import load_digit_splits, resize_levels
from attnkit.nn.masks import local_2d_mask
from attnkit.zoo.models.image import ImageTransformer, ImageTransformerConfig

TINY = dict(image_size=8, n_layer=2, n_head=2, d_model=32, dropout=0.0, query_block=(2, 4), memory_flange=(2, 2),
            block_1d=8, memory_1d=16)


def tiny(attention: str, **kw) -> ImageTransformer:
    return ImageTransformer(ImageTransformerConfig(**{**TINY, "attention": attention, **kw})).eval()


@pytest.mark.parametrize("attention", ["full", "local1d", "local2d"])
def test_sampler_output_shape_range_and_agreement_with_forward(attention):
    model = tiny(attention)
    labels = torch.tensor([0, 3, 9])
    g = torch.Generator().manual_seed(0)
    images = model.generate(labels, temperature=1.0, generator=g)
    assert images.shape == (3, 8, 8) and images.dtype == torch.long
    assert images.min() >= 0 and images.max() <= 16
    assert len(images.unique()) > 3  # it samples, it does not collapse to one value
    # Greedy decoding with the KV cache and sliced masks reproduces the full forward pass's argmax.
    greedy = model.generate(labels, temperature=0.0)
    assert torch.equal(model(greedy, labels).argmax(-1), greedy)


@pytest.mark.parametrize("attention", ["full", "local1d", "local2d"])
def test_prediction_of_a_pixel_never_sees_it_or_later_pixels(attention):
    model = tiny(attention)
    images, labels = torch.randint(0, 17, (2, 8, 8)), torch.tensor([1, 7])
    seq = model.to_sequence(images)
    p = 37
    changed = seq.clone()
    changed[:, p:] = (changed[:, p:] + 5) % 17  # change pixel p and everything after it
    before = model.to_sequence(model(images, labels))  # (B, L, levels)
    after = model.to_sequence(model(model.to_image(changed), labels))
    torch.testing.assert_close(before[:, :p + 1], after[:, :p + 1])  # predictions up to p use pixels < p
    assert not torch.allclose(before[:, p + 1:], after[:, p + 1:])


def test_local2d_one_layer_sees_only_its_memory_block():
    """With one layer, the prediction at position t depends on input t' (pixel t'-1) only if the mask allows."""
    model = tiny("local2d", n_layer=1)
    mask = model.attn_mask
    assert torch.equal(mask, local_2d_mask(8, 8, (2, 4), (2, 2)) & torch.ones(64, 64, dtype=torch.bool).tril())
    images, labels = torch.randint(0, 17, (1, 8, 8)), torch.tensor([4])
    seq = model.to_sequence(images)
    base = model.to_sequence(model(images, labels))
    t = 50
    for src in range(0, t):  # input position src + 1 holds pixel src
        changed = seq.clone()
        changed[:, src] = (changed[:, src] + 7) % 17
        moved = not torch.allclose(model.to_sequence(model(model.to_image(changed), labels))[:, t], base[:, t])
        assert moved == bool(mask[t, src + 1])


def test_class_conditioning_changes_predictions():
    model = tiny("local2d")
    images = torch.randint(0, 17, (1, 8, 8))
    assert not torch.allclose(model(images, torch.tensor([2])), model(images, torch.tensor([5])))


def test_upsampled_digits_keep_17_levels():
    small = load_digit_splits(size=8)["test"][0]
    big = load_digit_splits(size=16)["test"][0]
    assert big.shape == (360, 16, 16) and big.dtype == torch.uint8
    assert big.max() == 16 and big.min() == 0
    torch.testing.assert_close(big.float().mean(), small.float().mean(), atol=0.3, rtol=0)
    assert torch.equal(resize_levels(small, 8), small)


def test_untrained_model_is_near_uniform_and_training_lowers_bits_per_dim():
    from attnkit.zoo.tasks.image import bits_per_dim

    images, labels = load_digit_splits(size=8)["train"]
    images, labels = images[:16].long(), labels[:16]
    model = tiny("local2d", n_layer=1).train()
    start = bits_per_dim(model, images, labels, torch.device("cpu"))
    assert abs(start - math.log2(17)) < 0.3
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(25):
        loss = model.loss(images, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert bits_per_dim(model, images, labels, torch.device("cpu")) < start - 1.0


def test_sampling_under_inference_mode_as_the_first_masked_attention_call():
    """`attnkit sample` runs under inference_mode; the CPU path's one-time SDPA probe must not need grad there."""
    from attnkit.kernels import torch_path

    if hasattr(torch_path, "_sdpa_zeroes_empty_rows"):
        torch_path._sdpa_zeroes_empty_rows.cache_clear()
    model = tiny("local2d", n_layer=1)
    with torch.inference_mode():
        images = model.generate(torch.tensor([5]), generator=torch.Generator().manual_seed(0))
    assert images.shape == (1, 8, 8)

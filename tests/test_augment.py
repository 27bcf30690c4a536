"""The cache augmentation: the reference's random resized crop and flip,
reproducible per image."""

import math

import numpy as np
import torch
from PIL import Image

from sktip._augment import CROP_RATIO, CROP_SCALE, ViewAugmenter, crop_box


def test_crop_boxes_stay_in_the_reference_ranges():
    rng = np.random.default_rng(0)
    for _ in range(500):
        top, left, height, width = crop_box(200, 120, rng)
        assert 0 <= top and top + height <= 120
        assert 0 <= left and left + width <= 200
        # Rounding to whole pixels moves the area and ratio a little.
        assert CROP_SCALE[0] - 0.02 <= height * width / (200 * 120) <= 1.0
        assert CROP_RATIO[0] - 0.02 <= width / height <= CROP_RATIO[1] + 0.02


def test_thin_strip_falls_back_to_a_central_crop():
    # No crop of a 1x4000 strip has an aspect ratio within 3/4..4/3.
    top, left, height, width = crop_box(4000, 1, np.random.default_rng(0))
    assert (top, height) == (0, 1)
    assert width == round(1 * max(CROP_RATIO))
    assert left == (4000 - width) // 2


def test_about_half_of_the_views_are_flipped():
    # Left half black, right half white: a flipped view is brighter on the left.
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, 32:] = 255
    augmenter = ViewAugmenter(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    views = augmenter(Image.fromarray(pixels), 400, np.random.default_rng(0))

    assert views.shape == (400, 3, 32, 32)
    left, right = (
        views[:, :, :, :4].mean(dim=(1, 2, 3)),
        views[:, :, :, -4:].mean(dim=(1, 2, 3)),
    )
    flipped = (left > right).float().mean().item()
    assert abs(flipped - 0.5) < 4 * math.sqrt(0.25 / 400)


def test_views_are_normalised_with_the_given_statistics():
    white = Image.new("RGB", (40, 40), (255, 255, 255))
    views = ViewAugmenter(16, (0.25, 0.5, 0.75), (0.5, 0.25, 0.125))(
        white, 2, np.random.default_rng(0)
    )
    expected = torch.tensor([1.5, 2.0, 2.0]).view(1, 3, 1, 1).expand_as(views)
    torch.testing.assert_close(views, expected)


def test_trimming_long_images_does_not_change_the_model_input(tiny_model_name):
    from sktip import CLIPFeaturizer
    from sktip._encoding import _trim_long_side

    preprocess = CLIPFeaturizer(tiny_model_name)._loaded().preprocess
    rng = np.random.default_rng(0)
    for shape in [(40, 400, 3), (400, 40, 3)]:
        image = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8))
        trimmed = _trim_long_side(image)
        assert max(trimmed.size) == 4 * min(trimmed.size)
        torch.testing.assert_close(preprocess(trimmed), preprocess(image))

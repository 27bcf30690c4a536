"""The reference's cache augmentation, made reproducible per image.

Tip-Adapter builds its cache from views drawn by
``RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=bicubic)`` and
``RandomHorizontalFlip(p=0.5)`` followed by CLIP's normalisation. torchvision
draws those parameters from torch's global generator, so the views depend on
everything else the process did. Here every image gets its own generator,
seeded from the user's seed and the image's content: the same image and seed
always give the same views, whatever the batch, the order or the number of
loader workers.
"""

import math

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_CROP_ATTEMPTS = 10


def view_generator(seed, key):
    """A NumPy generator for the views of one image.

    Parameters
    ----------
    seed : int
        The caller's seed, drawn from ``random_state``.
    key : str
        Hexadecimal content digest of the image.
    """
    words = [int(key[i : i + 8], 16) for i in range(0, len(key), 8)]
    return np.random.default_rng([int(seed), *words])


def crop_box(width, height, rng, scale=CROP_SCALE, ratio=CROP_RATIO):
    """Draw a random-resized-crop box the way torchvision does.

    Returns
    -------
    top, left, crop_height, crop_width : int
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(_CROP_ATTEMPTS):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        crop_width = int(round(math.sqrt(target_area * aspect)))
        crop_height = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            return top, left, crop_height, crop_width

    # Same fallback as torchvision: the largest central crop whose aspect
    # ratio lies inside the allowed range.
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_width, crop_height = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        crop_width, crop_height = int(round(height * max(ratio))), height
    else:
        crop_width, crop_height = width, height
    return (
        (height - crop_height) // 2,
        (width - crop_width) // 2,
        crop_height,
        crop_width,
    )


class ViewAugmenter:
    """Turns one RGB image into ``n_views`` augmented, normalised tensors.

    Parameters
    ----------
    size : int or tuple of int
        Output size of the crop, the model's input size.
    mean, std : tuple of float
        Per-channel normalisation of the model.
    """

    def __init__(self, size, mean, std):
        self.size = [size, size] if isinstance(size, int) else list(size)
        self.mean = list(mean)
        self.std = list(std)

    def __call__(self, image, n_views, rng):
        views = []
        for _ in range(n_views):
            top, left, height, width = crop_box(image.width, image.height, rng)
            view = TF.resized_crop(
                image,
                top,
                left,
                height,
                width,
                self.size,
                interpolation=InterpolationMode.BICUBIC,
            )
            if rng.random() < 0.5:
                view = TF.hflip(view)
            tensor = TF.normalize(TF.to_tensor(view), self.mean, self.std)
            views.append(tensor)
        return torch.stack(views)

"""Batched image and text encoding through a torch ``DataLoader``.

Images are read and decoded inside the loader (in worker processes when
``num_workers > 0``) so that decoding overlaps the forward pass. A failure
to read one image does not kill the worker: it travels back as data and is
raised in the caller's process as an :class:`~sktip.exceptions.ImageLoadError`
that still knows the image's position and path.
"""

import contextlib

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from sktip._augment import ViewAugmenter, view_generator
from sktip._cache import l2_normalize
from sktip._images import content_key, decode_rgb, read_item
from sktip.exceptions import ImageLoadError

_TEXT_BATCH_SIZE = 256


class _ImageDataset(Dataset):
    """Items are ``(index, tensor or None, error or None)``.

    With ``n_views=None`` the tensor is the model's evaluation preprocessing
    of the image, shape (3, H, W); otherwise it is (n_views, 3, H, W)
    augmented views.
    """

    def __init__(self, images, preprocess, augmenter=None, n_views=None, seed=0):
        self.images = images
        self.preprocess = preprocess
        self.augmenter = augmenter
        self.n_views = n_views
        self.seed = seed

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        item = self.images[index]
        try:
            data = read_item(item, index)
            image = decode_rgb(data, index, item)
            if self.n_views is None:
                return index, self.preprocess(image), None
            rng = view_generator(self.seed, content_key(data))
            return index, self.augmenter(image, self.n_views, rng), None
        except ImageLoadError as exc:
            return index, None, exc


def _collate(batch):
    indices = [index for index, _, _ in batch]
    errors = [error for _, _, error in batch if error is not None]
    if errors:
        return indices, None, errors[0]
    return indices, torch.stack([tensor for _, tensor, _ in batch]), None


def _autocast(loaded):
    if loaded.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=loaded.autocast_dtype)


def encode_images(
    loaded,
    images,
    *,
    batch_size,
    num_workers=0,
    n_views=None,
    seed=0,
    normalize=True,
    verbose=0,
):
    """Encode images with a loaded model.

    Parameters
    ----------
    loaded : LoadedModel
    images : sequence
        File paths, PIL images or arrays.
    batch_size : int
        Number of pictures per forward pass; with views, each image counts
        ``n_views`` times.
    num_workers : int, default=0
        Loader worker processes; 0 decodes in the calling process.
    n_views : int or None, default=None
        ``None`` encodes the evaluation preprocessing of each image. An
        integer encodes that many augmented views of each image.
    seed : int, default=0
        Seed of the augmentation, ignored without views.
    normalize : bool, default=True
        Scale every feature vector to unit L2 norm.
    verbose : int, default=0
        Show a progress bar when positive.

    Returns
    -------
    features : ndarray of shape (n_images, d) or (n_images, n_views, d)
        float32.
    """
    augmenter = None
    images_per_batch = batch_size
    if n_views is not None:
        cfg = loaded.preprocess_cfg
        augmenter = ViewAugmenter(cfg["size"], cfg["mean"], cfg["std"])
        images_per_batch = max(1, batch_size // n_views)

    dataset = _ImageDataset(images, loaded.preprocess, augmenter, n_views, seed)
    loader = DataLoader(
        dataset,
        batch_size=images_per_batch,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=loaded.spec.device.startswith("cuda"),
    )
    shape = (len(images),) if n_views is None else (len(images), n_views)
    features = np.empty((*shape, loaded.embed_dim), dtype=np.float32)

    with tqdm(
        total=len(images), disable=verbose <= 0, unit="img", desc="encoding"
    ) as progress:
        for indices, pixels, error in loader:
            if error is not None:
                raise error
            batch = _forward_images(loaded, pixels, n_views)
            features[indices[0] : indices[-1] + 1] = batch
            progress.update(len(indices))

    return l2_normalize(features) if normalize else features


def _forward_images(loaded, pixels, n_views):
    if n_views is not None:
        pixels = pixels.flatten(0, 1)
    pixels = pixels.to(loaded.spec.device, loaded.input_dtype, non_blocking=True)
    with torch.inference_mode(), _autocast(loaded):
        output = loaded.model.encode_image(pixels)
    loaded.forward_calls += 1
    output = output.float().cpu().numpy()
    if n_views is not None:
        output = output.reshape(-1, n_views, output.shape[-1])
    return output


def encode_texts(loaded, texts, *, normalize=True):
    """Encode prompts; returns float32 (n_texts, d)."""
    features = np.empty((len(texts), loaded.embed_dim), dtype=np.float32)
    for start in range(0, len(texts), _TEXT_BATCH_SIZE):
        chunk = list(texts[start : start + _TEXT_BATCH_SIZE])
        tokens = loaded.tokenizer(chunk).to(loaded.spec.device)
        with torch.inference_mode(), _autocast(loaded):
            output = loaded.model.encode_text(tokens)
        features[start : start + len(chunk)] = output.float().cpu().numpy()
    return l2_normalize(features) if normalize else features

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
    """Items are ``(position, tensor or None, error or None)``.

    ``positions`` lists the indices of ``images`` to encode; errors name an
    image by its index in ``images``. ``keys`` holds the content digests
    already computed for ``images``, or ``None``. With ``n_views=None`` the
    tensor is the model's evaluation preprocessing of the image, shape
    (3, H, W); otherwise it is (n_views, 3, H, W) augmented views.
    """

    def __init__(
        self,
        images,
        positions,
        preprocess,
        augmenter=None,
        n_views=None,
        seed=0,
        keys=None,
    ):
        self.images = images
        self.positions = positions
        self.keys = keys
        self.preprocess = preprocess
        self.augmenter = augmenter
        self.n_views = n_views
        self.seed = seed

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, index):
        position = self.positions[index]
        item = self.images[position]
        try:
            data = read_item(item, position)
            image = decode_rgb(data, position, item)
            if self.n_views is None:
                return position, self.preprocess(_trim_long_side(image)), None
            key = content_key(data) if self.keys is None else self.keys[position]
            rng = view_generator(self.seed, key)
            return position, self.augmenter(image, self.n_views, rng), None
        except ImageLoadError as exc:
            return position, None, exc


def _trim_long_side(image, max_ratio=4):
    """Centre-crop an extremely elongated image to ``max_ratio`` : 1.

    The evaluation preprocessing resizes the short side to the model's input
    size and keeps only a central square, so the far ends of a 1 x 4000
    strip never reach the model; cropping them first keeps that resize from
    building a 224 x 896 000 intermediate image.
    """
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if long <= max_ratio * short:
        return image
    keep = max_ratio * short
    offset = (long - keep) // 2
    if width > height:
        return image.crop((offset, 0, offset + keep, height))
    return image.crop((0, offset, width, offset + keep))


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
    store=None,
    identity=None,
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
    store : MemoryStore, DiskStore or None, default=None
        Where computed features are looked up before encoding, and saved
        batch by batch as soon as they are computed, so that a failure
        later in the call loses nothing.
    identity : str or None, default=None
        Identity of the model, part of every store address.

    Returns
    -------
    features : ndarray of shape (n_images, d) or (n_images, n_views, d)
        float32.
    """
    shape = (len(images),) if n_views is None else (len(images), n_views)
    features = np.empty((*shape, loaded.embed_dim), dtype=np.float32)
    kind = "eval" if n_views is None else f"views-{seed}-{n_views}"

    addresses = None
    missing = list(range(len(images)))
    if store is not None:
        addresses = [
            (identity, kind, content_key(read_item(item, index)))
            for index, item in enumerate(images)
        ]
        missing = []
        for index, address in enumerate(addresses):
            cached = store.get(address)
            if cached is None or cached.shape != features.shape[1:]:
                missing.append(index)
            else:
                features[index] = cached

    augmenter = None
    images_per_batch = batch_size
    if n_views is not None:
        cfg = loaded.preprocess_cfg
        augmenter = ViewAugmenter(cfg["size"], cfg["mean"], cfg["std"])
        images_per_batch = max(1, batch_size // n_views)
    # The store's addresses already hold every image's digest: reuse them
    # to seed the views rather than hashing each image again.
    keys = None if addresses is None else [address[2] for address in addresses]
    dataset = _ImageDataset(
        images, missing, loaded.preprocess, augmenter, n_views, seed, keys
    )
    loader = DataLoader(
        dataset,
        batch_size=images_per_batch,
        shuffle=False,
        num_workers=num_workers if missing else 0,
        collate_fn=_collate,
        pin_memory=loaded.spec.device.startswith("cuda"),
    )

    with tqdm(
        total=len(missing), disable=verbose <= 0, unit="img", desc="encoding"
    ) as progress:
        for positions, pixels, error in loader:
            if error is not None:
                raise error
            batch = _forward_images(loaded, pixels, n_views)
            features[positions] = batch
            if store is not None:
                for position, row in zip(positions, batch, strict=True):
                    store.put(addresses[position], row)
            progress.update(len(positions))

    return l2_normalize(features) if normalize else features


def _forward_images(loaded, pixels, n_views):
    if n_views is not None:
        pixels = pixels.flatten(0, 1)
    pixels = pixels.to(loaded.spec.device, loaded.input_dtype, non_blocking=True)
    with torch.inference_mode(), _autocast(loaded):
        output = loaded.model.encode_image(pixels)
    loaded.forward_calls += 1
    loaded.pictures_encoded += len(pixels)
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

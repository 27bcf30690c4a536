"""Small, offline stand-ins for tests, examples and benchmarks.

Pretrained CLIP weights are hundreds of megabytes and come from a model
hub. To exercise the whole pipeline without them, this module saves a tiny
open_clip model with random weights as a ``local-dir:`` folder, loaded
through the same code as a real checkpoint, and writes scikit-learn's
handwritten digits as image files. Random weights carry no meaning: use
these for plumbing, never for accuracy.
"""

import json
from pathlib import Path

import numpy as np

__all__ = ["TINY_CLIP_CONFIG", "save_tiny_clip", "write_digit_images"]

#: open_clip configuration of a CLIP small enough to run in milliseconds on
#: a CPU: a 2-layer ViT on 32x32 pictures and a 2-layer text tower, 32-wide
#: embeddings. ``vocab_size`` matches the tokenizer shipped with open_clip.
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {
        "image_size": 32,
        "layers": 2,
        "width": 64,
        "head_width": 32,
        "patch_size": 8,
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 2,
    },
}


def save_tiny_clip(folder, seed=0):
    """Save a tiny CLIP with seeded random weights as an open_clip folder.

    The folder is what open_clip reads for a ``local-dir:`` model name, so
    the model goes through the same loading code as a real checkpoint. The
    caller's torch random stream is left untouched.

    Parameters
    ----------
    folder : str or path-like
        Created if needed; receives ``open_clip_config.json`` and
        ``open_clip_pytorch_model.bin``.
    seed : int, default=0
        Seed of the random weights: equal seeds give equal models.

    Returns
    -------
    model_name : str
        ``"local-dir:<folder>"``, to pass as ``CLIPFeaturizer(model_name)``.

    See Also
    --------
    write_digit_images : Real pictures to encode with it.

    Examples
    --------
    >>> import tempfile
    >>> from sktip import CLIPFeaturizer
    >>> from sktip.testing import save_tiny_clip
    >>> name = save_tiny_clip(tempfile.mkdtemp())
    >>> CLIPFeaturizer(name).embed_dim
    32
    """
    import open_clip
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    finally:
        # Leave the caller's random stream as it was.
        torch.random.set_rng_state(generator_state)
    config = {"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return f"local-dir:{folder}"


def write_digit_images(folder, n_images=None, size=32, formats=("png",)):
    """Write scikit-learn's handwritten digits as image files.

    Real scanned pictures, 10 classes, installed with scikit-learn: enough
    to run a few-shot classifier end to end on files without downloading a
    data set.

    Parameters
    ----------
    folder : str or path-like
        Created if needed.
    n_images : int or None, default=None
        How many of the 1797 digits to write, from the first; all when
        ``None``.
    size : int, default=32
        Side of the written pictures; the 8x8 scans are enlarged with
        nearest-neighbour sampling.
    formats : tuple of str, default=("png",)
        File formats, used in turn from one image to the next, such as
        ``("png", "jpg")``.

    Returns
    -------
    paths : ndarray of shape (n_images,)
        The file paths, as strings.
    labels : ndarray of shape (n_images,)
        The digit shown in each file.

    See Also
    --------
    save_tiny_clip : A model to encode them with.

    Examples
    --------
    >>> import tempfile
    >>> from sktip.testing import write_digit_images
    >>> paths, labels = write_digit_images(tempfile.mkdtemp(), n_images=3)
    >>> labels
    array([0, 1, 2])
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    n_images = len(digits.images) if n_images is None else n_images
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, pixels in enumerate(digits.images[:n_images]):
        image = Image.fromarray((pixels * (255 / 16)).round().astype(np.uint8))
        suffix = formats[index % len(formats)]
        path = folder / f"digit_{index:04d}_{digits.target[index]}.{suffix}"
        image.resize((size, size), Image.NEAREST).save(path)
        paths.append(str(path))
    return np.array(paths), digits.target[:n_images]

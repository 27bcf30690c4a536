"""Exceptions and warnings raised by sktip."""

import os
import sys

__all__ = [
    "EmbeddingCacheWarning",
    "ImageLoadError",
    "PretrainedWeightsError",
    "RandomWeightsWarning",
    "SingleShotWarning",
    "SktipWarning",
]


class ImageLoadError(ValueError):
    """An input image could not be read or decoded.

    The message names the position of the image in the input and, for a
    file, its path. The same facts are kept as attributes so that a caller
    can drop the offending item and try again.

    Parameters
    ----------
    message : str
        Human-readable description.
    index : int or None, default=None
        Position of the image in the input sequence.
    source : str or None, default=None
        Path of the file, or a short description of an in-memory image.

    See Also
    --------
    sktip.CLIPFeaturizer.transform : Raises it for an image it cannot read.
    """

    def __init__(self, message, index=None, source=None):
        super().__init__(message)
        self.index = index
        self.source = source

    def __reduce__(self):
        # Keeps the attributes when the error crosses a process boundary
        # (DataLoader workers, joblib, Dask).
        return (type(self), (self.args[0], self.index, self.source))


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights for a CLIP model could not be loaded.

    Raised instead of falling back to random weights: a classifier built on
    random weights runs but predicts little better than chance.

    See Also
    --------
    RandomWeightsWarning : Issued when random weights are asked for.
    """


class SktipWarning(UserWarning):
    """Base class of the warnings issued by sktip.

    Filter on it to silence, or to turn into errors, every warning of the
    package at once.

    See Also
    --------
    RandomWeightsWarning : A model runs with random weights.
    EmbeddingCacheWarning : An on-disk embedding cache entry is recomputed.
    """


class RandomWeightsWarning(SktipWarning):
    """A CLIP model runs with random weights.

    Issued when a model is loaded with ``pretrained=None``, which asks for
    random weights: its features carry no semantic meaning, and a classifier
    built on them predicts close to chance.

    See Also
    --------
    PretrainedWeightsError : Raised when pretrained weights cannot be loaded.
    """


class EmbeddingCacheWarning(SktipWarning):
    """An on-disk embedding cache entry failed its check and is recomputed.

    The entry was truncated, corrupted or written for another image or
    model. It is never used: the embedding is computed again and the entry
    rewritten.

    See Also
    --------
    sktip.CLIPFeaturizer : Its ``embedding_cache`` parameter sets the cache.
    """


class SingleShotWarning(SktipWarning):
    """Leave-one-out tuning met a class with a single shot.

    Holding that shot out leaves its class with no key in the cache, so only
    the zero-shot term can classify it, and the search favours a small
    ``alpha`` whatever the data. Use ``cv=<folds>`` with more shots, or
    ``X_val``.

    See Also
    --------
    sktip.TipAdapterClassifierCV : The estimator that issues it.
    """


def _caller_stacklevel():
    """Stack level of the first frame outside sktip and scikit-learn, for
    warnings that should point at the user's line whatever route (a
    ``set_output`` wrapper, a Pipeline) led to them."""
    import sklearn

    packages = tuple(
        os.path.dirname(os.path.abspath(module.__file__)) + os.sep
        for module in (sys.modules[__name__.rpartition(".")[0]], sklearn)
    )
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        packages
    ):
        frame, level = frame.f_back, level + 1
    return level

"""Run a fitted sktip estimator over a Dask array of images.

Optional: this module needs ``dask`` (``pip install "sktip[dask]"``); the
rest of sktip never imports it. See the "Scaling out" page of the
documentation for the cluster recipe and for the plain Dask calls that
:func:`map_images` wraps.
"""

import numbers

import numpy as np
from sklearn.utils.validation import check_is_fitted

from sktip.exceptions import ImageLoadError

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'sktip.dask needs dask; install it with pip install "sktip[dask]".'
    ) from exc

__all__ = ["map_images"]

_METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
)


def map_images(estimator, images, method="predict", *, chunk_size=1000):
    """Call ``getattr(estimator, method)`` on every block of a Dask array.

    The estimator enters the task graph once, so that each Dask worker
    receives it once, and every worker process loads the CLIP model on first
    use and reuses it for all the blocks it computes. Nothing is computed
    until the result is.

    Parameters
    ----------
    estimator : object
        A fitted :class:`~sktip.TipAdapterClassifier` (or
        :class:`~sktip.TipAdapterClassifierCV`, or a pipeline ending in one)
        for the classifier methods, or a :class:`~sktip.CLIPFeaturizer` for
        ``"transform"``. Its pickle holds no model weights.
    images : dask.array.Array of shape (n_samples,) or sequence
        Images, usually file paths that every worker can read. A sequence is
        split into blocks of ``chunk_size`` images.
    method : {"predict", "predict_proba", "predict_log_proba", \
            "decision_function", "transform"}, default="predict"
    chunk_size : int, default=1000
        Images per block when ``images`` is not a Dask array.

    Returns
    -------
    result : dask.array.Array
        Of shape (n_samples,) for ``predict`` (and ``decision_function``
        with two classes), (n_samples, n_classes) for the probabilities and
        logits, and (n_samples, embed_dim) for ``transform``, in the order of
        ``images``, blocked like ``images`` along the first axis.

    Raises
    ------
    sktip.exceptions.ImageLoadError
        When the result is computed and an image cannot be read. Its
        ``index`` is the position in the whole of ``images`` (in its block
        when the chunk sizes of ``images`` are unknown); the message also
        names the block and the position within it.

    See Also
    --------
    dask.array.Array.map_blocks : What this function calls.

    Examples
    --------
    >>> import dask.array as da
    >>> from distributed import Client
    >>> from sktip.dask import map_images
    >>> client = Client("tcp://scheduler:8786")  # doctest: +SKIP
    >>> paths = da.from_array(all_paths, chunks=2000)  # doctest: +SKIP
    >>> labels = map_images(clf, paths).compute()  # doctest: +SKIP
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    getattr(estimator, method)  # fails early for an estimator without it
    check_is_fitted(estimator)
    if not isinstance(images, da.Array):
        items = np.empty(len(images), dtype=object)
        items[:] = list(images)
        images = da.from_array(items, chunks=chunk_size)
    if images.ndim != 1:
        raise ValueError(f"images must be 1-D, got shape {images.shape}.")

    shared = dask.delayed(estimator, pure=True)
    options = {"meta": np.empty((0,), dtype=np.float32)}
    if method == "predict":
        options["meta"] = np.empty((0,), dtype=estimator.classes_.dtype)
    elif method == "transform":
        width = getattr(estimator, "embed_dim", np.nan)
        options.update(
            new_axis=1,
            chunks=(images.chunks[0], (width,)),
            meta=np.empty((0, 0), dtype=np.float32),
        )
    elif method != "decision_function" or len(estimator.classes_) > 2:
        options.update(
            new_axis=1,
            chunks=(images.chunks[0], (len(estimator.classes_),)),
            meta=np.empty((0, 0), dtype=np.float32),
        )
    return images.map_blocks(
        _call_block, shared, method, token=f"sktip-{method}", **options
    )


def _call_block(block, estimator, method, block_info=None):
    """Run one block; an unreadable image is reported by its global index."""
    try:
        return getattr(estimator, method)(block)
    except ImageLoadError as exc:
        if exc.index is None or block_info is None:
            raise
        ((start, _),) = block_info[0]["array-location"]
        (block_number,) = block_info[0]["chunk-location"]
        where = f" [index {exc.index} of block {block_number}]"
        if not isinstance(start, numbers.Integral):
            # Unknown chunk sizes: the block's start is NaN.
            raise ImageLoadError(
                str(exc.args[0]) + where, index=exc.index, source=exc.source
            ) from exc
        index = int(start) + exc.index
        message = str(exc.args[0])
        local = f"image at index {exc.index} "
        if message.startswith(local):
            message = f"image at index {index} " + message[len(local) :]
        raise ImageLoadError(message + where, index=index, source=exc.source) from exc

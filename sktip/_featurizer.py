"""``CLIPFeaturizer``: images and prompts to CLIP embeddings, as a transformer.

The featurizer protocol
-----------------------
:class:`~sktip.TipAdapterClassifier` does not care where embeddings come
from. Any object with the methods below can serve as its ``featurizer``;
no base class is needed.

``transform(images) -> ndarray of shape (n_images, d)``
    Required. One L2-normalised embedding per image.
``encode_text(prompts) -> ndarray of shape (n_prompts, d)``
    Optional. One embedding per prompt string, in the image embedding space.
    Without it the classifier needs ``text_features`` or runs cache-only.
``encode_views(images, n_views, random_state)``
    Optional. Returns an ndarray of shape (n_images, n_views, d): the raw
    (unnormalised) embeddings of ``n_views`` randomly augmented views of
    every image, reproducible for an integer ``random_state``. Without it
    the classifier needs ``augment_views=0``.

The classifier never fits the featurizer: it must be ready to use, as a
pretrained encoder is.
"""

import numbers
import os

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from sktip import _models
from sktip._embedding_store import DiskStore, memory_store
from sktip._encoding import encode_images, encode_texts

_PRECISIONS = {"auto", "fp32", "amp", "amp_bf16", "fp16", "bf16"}


class CLIPFeaturizer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Encode images into CLIP embeddings with an open_clip model.

    A stateless scikit-learn transformer: ``fit`` learns nothing, and
    ``transform`` works without it. The model is loaded on first use and
    shared by every featurizer with the same model parameters in the
    process; it never becomes part of the estimator's parameters, its
    clones or its pickles.

    Parameters
    ----------
    model_name : str, default="ViT-B-32"
        An open_clip architecture name (see ``open_clip.list_models()``), or
        ``"local-dir:/path/to/folder"`` for a folder that holds
        ``open_clip_config.json`` and a checkpoint, or ``"hf-hub:org/repo"``.
    pretrained : str or None, default="openai"
        An open_clip pretrained tag for ``model_name`` (see
        ``open_clip.list_pretrained()``), or the path of a local checkpoint
        file (``.pt``, ``.bin`` or ``.safetensors``). For ``local-dir:`` and
        ``hf-hub:`` names the weights come with the name and any string here
        is ignored. ``None`` asks for random weights, for every kind of
        name; that only makes sense for tests, and it warns with
        :class:`~sktip.exceptions.RandomWeightsWarning`.
    device : str, default="auto"
        ``"auto"`` picks CUDA when a GPU is visible and the CPU otherwise;
        any torch device string (``"cpu"``, ``"cuda:1"``) is used as is.
    batch_size : int, default=32
        Images per forward pass. Augmented views count one each.
    precision : {"auto", "fp32", "amp", "amp_bf16", "fp16", "bf16"}, \
            default="auto"
        ``"amp"`` and ``"amp_bf16"`` run fp32 weights under autocast on CUDA
        (and plain fp32 on the CPU); ``"fp16"`` and ``"bf16"`` convert the
        weights, as the reference does on CUDA. ``"auto"`` is ``"amp"`` on
        CUDA and ``"fp32"`` on the CPU.
    num_workers : int, default=0
        Worker processes that read and decode images while the model runs.
        0 decodes in the calling process, which is fastest on a small CPU
        machine; use a few workers with a GPU.
    cache_dir : str or None, default=None
        Where open_clip stores downloaded weights; its default when ``None``.
    embedding_cache : "memory", str, path-like, joblib.Memory or None, \
            default="memory"
        Where computed embeddings are kept so that no image is encoded twice
        by the same model: ``"memory"`` keeps them in this process (up to
        1 GiB, shared by all featurizers and their clones, which is what
        lets ``GridSearchCV`` encode each image once); a folder path, or a
        ``joblib.Memory`` whose location is used, keeps them on disk across
        processes and sessions; ``None`` keeps nothing. Entries are
        addressed by the model's identity and the image's content, so an
        edited file is encoded again. Augmented views are reused only for an
        integer ``random_state``.
    verbose : int, default=0
        Show a progress bar over images when positive.

    Attributes
    ----------
    embed_dim : int
        Size of the embeddings, read from the model configuration.

    See Also
    --------
    TipAdapterClassifier : Few-shot classifier built on these embeddings.

    Notes
    -----
    Every input image becomes RGB: EXIF orientation is applied, animated
    images contribute their first frame, transparent pixels are composited
    on white, and 16-bit images are scaled to 8 bits.

    Examples
    --------
    >>> from sktip import CLIPFeaturizer
    >>> featurizer = CLIPFeaturizer("ViT-B-32", pretrained="openai")
    >>> featurizer.get_params()["model_name"]
    'ViT-B-32'
    """

    _parameter_constraints = {
        "model_name": [str],
        "pretrained": [str, os.PathLike, None],
        "device": [str],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "precision": [StrOptions(_PRECISIONS)],
        "num_workers": [Interval(numbers.Integral, 0, None, closed="left")],
        "cache_dir": [str, os.PathLike, None],
        "embedding_cache": [str, os.PathLike, HasMethods(["cache"]), None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model_name="ViT-B-32",
        pretrained="openai",
        *,
        device="auto",
        batch_size=32,
        precision="auto",
        num_workers=0,
        cache_dir=None,
        embedding_cache="memory",
        verbose=0,
    ):
        self.model_name = model_name
        self.pretrained = pretrained
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.embedding_cache = embedding_cache
        self.verbose = verbose

    def fit(self, X=None, y=None):
        """Check the parameters; nothing is learned.

        Parameters
        ----------
        X : None
            Ignored.
        y : None
            Ignored.

        Returns
        -------
        self : CLIPFeaturizer
            The featurizer itself.
        """
        self._validate_params()
        return self

    def transform(self, X):
        """Encode images into L2-normalised embeddings.

        Parameters
        ----------
        X : sequence of length n_samples
            File paths (str or path-like), ``PIL.Image`` objects or uint8
            arrays of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), mixed
            freely.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, embed_dim), dtype float32
            Rows have unit L2 norm.

        Raises
        ------
        sktip.exceptions.ImageLoadError
            If an image cannot be read; the message names its index and path.
        sktip.exceptions.PretrainedWeightsError
            If the model's weights cannot be loaded.
        """
        return self._encode(self._check_images(X))

    def encode_views(self, X, n_views=10, random_state=None):
        """Encode randomly augmented views of every image, unnormalised.

        Each view is a random resized crop (scale 0.5 to 1, aspect ratio 3/4
        to 4/3, bicubic) at the model's input size, flipped horizontally
        with probability 1/2, then normalised with the model's mean and
        standard deviation: the augmentation the Tip-Adapter reference uses
        to build its cache.

        Parameters
        ----------
        X : sequence of length n_samples
            Images, as for :meth:`transform`.
        n_views : int, default=10
            Views per image.
        random_state : int, RandomState instance or None, default=None
            Seed of the augmentation. For an integer, the views of an image
            depend only on the seed and the image's content, not on its
            position in ``X`` or on the batch size.

        Returns
        -------
        features : ndarray of shape (n_samples, n_views, embed_dim), \
                dtype float32
            Raw image features, not normalised, so that they can be
            averaged over the views before normalisation.
        """
        images = self._check_images(X)
        if not isinstance(n_views, numbers.Integral) or n_views < 1:
            raise ValueError(f"n_views must be a positive integer, got {n_views!r}.")
        seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
        return self._encode(images, n_views=int(n_views), seed=seed, normalize=False)

    def encode_text(self, texts):
        """Encode prompts into L2-normalised embeddings.

        Parameters
        ----------
        texts : sequence of str of length n_texts
            The prompts, such as ``"a photo of a cat."``.

        Returns
        -------
        embeddings : ndarray of shape (n_texts, embed_dim), dtype float32
            Rows have unit L2 norm.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string.")
        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(
                    f"text at index {position} is a {type(text).__name__}, not a str."
                )
        self._validate_params()
        return encode_texts(self._loaded(), texts)

    @property
    def embed_dim(self):
        """Size of the embeddings, from the configuration when possible."""
        configured = _models.configured_embed_dim(self.model_name)
        return configured if configured is not None else self._loaded().embed_dim

    @property
    def _n_features_out(self):
        return self.embed_dim

    def __sklearn_is_fitted__(self):
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.non_deterministic = True
        tags.input_tags.two_d_array = False
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        return tags

    def _loaded(self):
        pretrained = self.pretrained
        if isinstance(pretrained, os.PathLike):
            pretrained = os.fspath(pretrained)
        device = _models.resolve_device(self.device)
        precision = self.precision
        if precision == "auto":
            precision = "amp" if device.startswith("cuda") else "fp32"
        spec = _models.ModelSpec(
            model_name=self.model_name,
            pretrained=pretrained,
            precision=precision,
            device=device,
            cache_dir=None if self.cache_dir is None else os.fspath(self.cache_dir),
            weights_stamp=_models.weights_stamp(self.model_name, pretrained),
        )
        return _models.get_model(spec)

    def _store(self):
        cache = self.embedding_cache
        if cache is None:
            return None
        if isinstance(cache, str) and cache == "memory":
            return memory_store()
        return DiskStore(getattr(cache, "location", cache))

    def _encode(self, images, **options):
        loaded = self._loaded()
        return encode_images(
            loaded,
            images,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            verbose=self.verbose,
            store=self._store(),
            identity=loaded.identity,
            **options,
        )

    def _check_images(self, X):
        self._validate_params()
        if isinstance(X, str | os.PathLike):
            raise TypeError(
                "X must be a sequence of images; wrap a single path in a list."
            )
        if hasattr(X, "to_numpy") and getattr(X, "ndim", 1) == 2:
            columns = list(getattr(X, "columns", []))
            raise ValueError(
                "X must be a 1-D sequence of images, not a table; select the "
                f"column that holds them, e.g. X[{(columns or ['path'])[0]!r}]."
            )
        if hasattr(X, "to_numpy") and getattr(X, "ndim", 1) == 1:
            X = X.to_numpy()
        if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "OUS":
            raise ValueError(
                f"X is a 2-D array of shape {X.shape}; pass a 1-D sequence of "
                "images (paths, PIL images or arrays), e.g. X.ravel()."
            )
        if isinstance(X, np.ndarray) and X.dtype != object and X.ndim >= 3:
            # A stack of equally sized pictures, (n, H, W) or (n, H, W, C).
            return list(X)
        try:
            return list(X)
        except TypeError:
            raise TypeError(
                f"X must be a sequence of images, got {type(X).__name__}."
            ) from None

"""Saving fitted Tip-Adapter classifiers to a single file that runs no code
when it is loaded.

Pickle and joblib files rebuild objects by calling code named in the file,
so loading one from an untrusted source can run anything. :func:`save`
writes a fitted :class:`~sktip.TipAdapterClassifier` or
:class:`~sktip.TipAdapterClassifierCV` as one `safetensors
<https://huggingface.co/docs/safetensors>`_ file instead: raw arrays plus a
JSON header, parsed by :func:`load` without importing or calling anything
that the file names.

File layout
-----------
The tensors of the file are the fitted arrays, under their attribute
names:

``cache_keys_``, ``cache_values_``
    Always present.
``text_features_``
    Present unless the model is cache-only.
``finetuned_keys_``, ``finetuned_values_``
    Present when the keys were fine-tuned.

The safetensors header's ``__metadata__`` holds three strings:

``format``
    ``"sktip.tip-adapter"``, which tells an sktip file from other
    safetensors files.
``manifest``
    A JSON object with ``format`` and ``format_version``, the
    ``estimator`` class name, the ``params`` of ``get_params(deep=False)``
    except ``featurizer`` and ``text_features``, a ``text_features_given``
    flag, ``classes`` (the labels with their dtype), the other fitted
    ``attributes`` (``n_features_in_``, ``feature_names_in_``, ``alpha_``,
    ``beta_``, ``best_score_``, ``best_index_``, ``n_splits_``, ``n_iter_``,
    ``loss_curve_``, ``validation_scores_``, ``best_validation_score_``, as
    far as the estimator has them) and the ``featurizer`` identity.
``sha256``
    SHA-256 over the manifest text and every tensor's name, dtype, shape
    and bytes.

Values that JSON has no type for are tagged: ``{"__tuple__": [...]}``,
``{"__mapping__": [[key, value], ...]}``, ``{"__scalar__": value, "dtype":
"<f4"}`` for a NumPy scalar and ``{"__ndarray__": [...], "dtype": "<U3",
"shape": [3]}`` for an array, so that a parameter comes back with the type
it had, down to the NumPy scalar type (which decides the precision of the
arithmetic it takes part in).

Featurizer identity
-------------------
The featurizer itself is not stored: a CLIP model is hundreds of
megabytes, and a user featurizer is code. The file records what identifies
it instead, and :func:`load` takes the featurizer to use and refuses one
whose identity differs, naming the fields that differ.

For a :class:`~sktip.CLIPFeaturizer` the identity is ``model_name``,
``pretrained``, ``weights_sha256``, ``precision``, ``preprocess_cfg`` and
``embed_dim``. Local weights are identified by content, not location: a
``local-dir:`` name is recorded as ``"local-dir:"`` with the SHA-256 of its
``open_clip_config.json`` and of every checkpoint file (``.safetensors``,
``.bin``, ``.pth``) in the folder, by file name; a checkpoint file passed as
``pretrained`` is recorded as ``"file"`` with the SHA-256 of the file. A
pretrained tag such as ``"openai"`` and an ``hf-hub:`` name are identities
in themselves and are recorded as given. open_clip ignores ``pretrained``
for ``local-dir:`` and ``hf-hub:`` names except that ``None`` asks for
random weights, so it is recorded as ``"bundled"`` or ``None`` for them.
Random weights (``pretrained=None``) are identified by a digest of their
values and of the model's settings, since their values follow torch's seed.
``precision`` is the parameter as given, so ``"auto"`` matches ``"auto"``
on a machine with another device. The preprocessing configuration and
``embed_dim`` come from the loaded model: both :func:`save` and
:func:`load` load the weights.

Any other featurizer is identified by its class ``__qualname__`` and, when
it has a ``get_params`` method, by the values of ``get_params()``; a value
that JSON cannot represent counts by its type alone, recorded as
``{"__type__": "module.QualName"}``.

What is not stored
------------------
``cv_results_`` of :class:`~sktip.TipAdapterClassifierCV` is left out: it
describes the search, not the model, and can be large. ``best_index_`` and
``best_score_`` are kept. The ``text_features`` parameter is not stored
either, since ``text_features_`` holds its normalised rows; when it was
given, the loaded estimator's ``text_features`` is a copy of
``text_features_`` (an array in ``classes_`` order even if a mapping was
given), so that refitting on the same classes builds the same zero-shot
classifier. Parameters that JSON cannot represent, such as a
``RandomState`` as ``random_state`` or a splitter as ``cv``, are refused
at save time; set them to an int or ``None`` first.

Integrity, not authenticity
---------------------------
The checksum detects a truncated, corrupted or hand-edited file. It is not
a signature: whoever can write the file can recompute it. Loading stays
safe even then, since nothing in the file is executed, the estimator class
comes from a fixed allow-list, and every array and attribute is checked for
type, shape and consistency before it is set.
"""

import hashlib
import json
import numbers
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import safetensors.numpy
from sklearn.utils.validation import check_is_fitted

from sktip._classifier import TipAdapterClassifier
from sktip._classifier_cv import TipAdapterClassifierCV
from sktip._featurizer import CLIPFeaturizer
from sktip._models import HF_HUB_PREFIX, LOCAL_DIR_PREFIX

__all__ = ["load", "save"]

FORMAT_NAME = "sktip.tip-adapter"
FORMAT_VERSION = 1

# Classes are looked up here by the name in the file; nothing is imported
# by a name read from a file.
_ESTIMATORS = {
    "TipAdapterClassifier": TipAdapterClassifier,
    "TipAdapterClassifierCV": TipAdapterClassifierCV,
}
_TENSORS = (
    "cache_keys_",
    "cache_values_",
    "text_features_",
    "finetuned_keys_",
    "finetuned_values_",
)
_FINETUNE_ATTRIBUTES = (
    "loss_curve_",
    "n_iter_",
    "validation_scores_",
    "best_validation_score_",
)
_SEARCH_ATTRIBUTES = ("alpha_", "beta_", "best_score_", "best_index_", "n_splits_")
_ATTRIBUTES = (
    "n_features_in_",
    "feature_names_in_",
    *_FINETUNE_ATTRIBUTES,
    *_SEARCH_ATTRIBUTES,
)
_DROPPED_ATTRIBUTES = ("cv_results_",)
# Parameters that are not written to the manifest: the featurizer is passed
# to load, and text_features_ holds the text features.
_UNSTORED_PARAMS = ("featurizer", "text_features")

_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pth")
_LOCAL_DIR_CONFIG = "open_clip_config.json"

# Byte order, kind and size of the dtypes a manifest may name: booleans,
# integers, floats, fixed-width str and object.
_DTYPE_PATTERN = re.compile(r"[<>|=](?:b1|[iu][1248]|f[248]|U\d{1,9}|O)")
_SCALAR_KINDS = "biufU"
_TAGS = ("__tuple__", "__mapping__", "__scalar__", "__ndarray__", "__type__")

# SHA-256 of local weight files by (path, size, mtime), so that saving many
# models on one backbone hashes its checkpoint once.
_file_digests = {}


def save(estimator, path):
    """Write a fitted Tip-Adapter classifier to one safetensors file.

    The fitted arrays become safetensors tensors and everything else a JSON
    manifest in the file's header, so that :func:`load` rebuilds the
    estimator without executing anything from the file, unlike pickle or
    joblib.

    Parameters
    ----------
    estimator : TipAdapterClassifier or TipAdapterClassifierCV
        A fitted classifier, of exactly one of these classes.
    path : str or path-like
        Where to write the file, conventionally with the suffix
        ``.safetensors``. An existing file is replaced; the new file is
        written beside it first, so that an interrupted save leaves the old
        file whole.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    TypeError
        If ``estimator`` is of another class, or holds a parameter, a label
        or a fitted attribute that the format cannot represent: for
        example ``random_state`` as a ``RandomState``, a splitter as
        ``cv``, or labels that are not str, int, float or bool (NumPy
        scalars of these types are fine).
    ValueError
        If the fitted attributes are inconsistent with each other.
    sktip.exceptions.PretrainedWeightsError
        If the estimator's ``CLIPFeaturizer`` cannot load its model, which
        is needed for its identity.

    See Also
    --------
    load : Read the file back.

    Notes
    -----
    The tensors are ``cache_keys_``, ``cache_values_``, ``text_features_``
    (unless the model is cache-only) and ``finetuned_keys_`` and
    ``finetuned_values_`` (when the keys were fine-tuned). The header's
    ``__metadata__`` holds the format name, the JSON manifest and a SHA-256
    checksum of the manifest and the tensors. The manifest holds the format
    version, the class name, the parameters, the labels with their dtype,
    the other fitted attributes and the featurizer's identity; NumPy scalar
    and array parameters keep their types, on which the precision of the
    arithmetic depends.

    The featurizer is not stored, only what identifies it, which
    :func:`load` checks against the featurizer it is given. For a
    ``CLIPFeaturizer`` that is the model name, the pretrained tag, the
    SHA-256 of local weight files (of the ``open_clip_config.json`` and
    every checkpoint of a ``local-dir:`` folder, by file name, or of the
    checkpoint file passed as ``pretrained``) instead of their paths, the
    ``precision`` parameter as given, the model's preprocessing
    configuration and ``embed_dim``. Any other featurizer is identified by
    its class name and, when it has ``get_params``, by the values of
    ``get_params()``; a value JSON cannot represent counts by its type only.

    ``cv_results_`` is not stored: it describes the search, not the model,
    and can be large; ``best_index_`` and ``best_score_`` are. Nor is the
    ``text_features`` parameter, whose normalised rows ``text_features_``
    holds.

    The checksum detects a truncated, corrupted or hand-edited file. It is
    not a signature, since whoever can write the file can recompute it;
    loading is safe regardless, because nothing in the file is executed and
    every value is checked before it is set.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import sktip
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 8))
    >>> y = np.repeat(["cat", "dog"], 10)
    >>> clf = sktip.TipAdapterClassifier(alpha=2.0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "clf.safetensors")
    >>> sktip.save(clf, path)
    >>> sktip.load(path).alpha
    2.0
    """
    if type(estimator) not in _ESTIMATORS.values():
        raise TypeError(
            "sktip.save writes TipAdapterClassifier and TipAdapterClassifierCV "
            f"estimators, not {type(estimator).__qualname__}; pickle or joblib "
            "can store other objects."
        )
    check_is_fitted(estimator)

    params = _stored_params(estimator)
    attributes = {name: getattr(estimator, name) for name in _fitted_names(estimator)}
    tensors = {
        name: np.ascontiguousarray(attributes.pop(name))
        for name in _TENSORS
        if attributes.get(name) is not None
    }
    classes = attributes.pop("classes_")
    attributes.pop("text_features_", None)
    try:
        _check_state(
            type(estimator),
            estimator.get_params(deep=False),
            dict(attributes, classes_=classes, **tensors),
            featurizer_mode=estimator.featurizer is not None,
        )
    except ValueError as exc:
        raise ValueError(
            f"{type(estimator).__name__} cannot be saved: its fitted attributes "
            f"are inconsistent: {exc}."
        ) from None

    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "estimator": type(estimator).__name__,
        "params": params,
        "text_features_given": (
            estimator.text_features is not None and "text_features_" in tensors
        ),
        "classes": _encode_labels(classes),
        "attributes": {
            name: _encode_attribute(name, value)
            for name, value in sorted(attributes.items())
        },
        "featurizer": _featurizer_identity(estimator.featurizer),
    }
    manifest_text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    metadata = {
        "format": FORMAT_NAME,
        "manifest": manifest_text,
        "sha256": _checksum(manifest_text, tensors),
    }
    _write_atomically(Path(path), safetensors.numpy.save(tensors, metadata=metadata))


def load(path, featurizer=None):
    """Read a classifier written by :func:`save`.

    Nothing in the file is executed: the estimator class comes from a fixed
    list of sktip classes, the checksum is verified first, and every array
    and attribute is checked for type, shape and consistency before it is
    set.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    featurizer : object or None, default=None
        The featurizer of the loaded estimator: required when the model was
        saved with one, refused when it was fitted on embeddings. Its
        identity must match the saved one (see Notes).

    Returns
    -------
    estimator : TipAdapterClassifier or TipAdapterClassifierCV
        The fitted classifier, whose predictions are bit-identical to
        those of the saved one.

    Raises
    ------
    ValueError
        If the file is not a valid sktip file (truncated, corrupted, not
        safetensors, not written by sktip, written by a newer format
        version, or failing its checksum or its consistency checks), or if
        ``featurizer`` is missing, superfluous or does not match the saved
        identity. The message names the path, and for a mismatch every
        field that differs, as in ``model_name: saved 'ViT-B-32', given
        'RN50'``.
    OSError
        If the file cannot be read.
    sktip.exceptions.PretrainedWeightsError
        If the given ``CLIPFeaturizer`` cannot load its model, which is
        needed for its identity.

    See Also
    --------
    save : Write the file.

    Notes
    -----
    The identity of ``featurizer`` is computed as :func:`save` computes
    it. A ``CLIPFeaturizer`` matches when it has the same model name,
    pretrained tag, weights, ``precision`` parameter, preprocessing and
    embedding size; local weights are compared by content, so a copy of a
    checkpoint or of a ``local-dir:`` folder elsewhere matches. Parameters
    that do not change the embeddings, such as ``device``, ``batch_size``
    or ``embedding_cache``, may differ. A model with random weights
    (``pretrained=None``) matches only a model with the same random values.
    Another featurizer matches when it has the same class name and
    ``get_params()`` values.

    The loaded estimator has no ``cv_results_``. Its ``text_features``
    parameter is ``None`` if it was ``None`` when saved, and otherwise a
    copy of ``text_features_``, rows in ``classes_`` order, even if a
    mapping was given; refitting on the same classes builds the same
    zero-shot classifier.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import sktip
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 8))
    >>> y = np.repeat([3, 7], 10)
    >>> clf = sktip.TipAdapterClassifierCV(alphas=(0.5, 1.0)).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "clf.safetensors")
    >>> sktip.save(clf, path)
    >>> restored = sktip.load(path)
    >>> bool(np.array_equal(restored.predict_proba(X), clf.predict_proba(X)))
    True
    """
    tensors, manifest = _read_verified(path)
    try:
        estimator, saved_identity = _rebuild(tensors, manifest)
    except (LookupError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise ValueError(
            f"{os.fspath(path)!r} is not a valid sktip file: {exc}"
        ) from None

    if saved_identity is None and featurizer is not None:
        raise ValueError(
            f"{os.fspath(path)!r} holds a model fitted on embeddings, without a "
            "featurizer; load it without featurizer= and pass embeddings to it."
        )
    if saved_identity is not None and featurizer is None:
        described = (
            f"a CLIPFeaturizer on {saved_identity.get('model_name')!r}"
            if saved_identity.get("kind") == "clip"
            else f"a {saved_identity.get('class')} featurizer"
        )
        raise ValueError(
            f"{os.fspath(path)!r} holds a model fitted with {described}; pass "
            "an equivalent one as load(path, featurizer=...)."
        )
    if featurizer is not None:
        given_identity = _featurizer_identity(featurizer)
        if saved_identity.get("kind") != given_identity["kind"]:
            # A CLIPFeaturizer against another featurizer: every field would
            # differ, and only the kind of featurizer matters.
            saved_identity = _pick(saved_identity, ("kind", "class"))
            given_identity = _pick(given_identity, ("kind", "class"))
        differences = _differences(saved_identity, given_identity)
        if differences:
            raise ValueError(
                f"The featurizer does not match the one {os.fspath(path)!r} was "
                "saved with: " + "; ".join(differences) + "."
            )
    estimator.set_params(featurizer=featurizer)
    return estimator


# -- reading and writing ---------------------------------------------------


def _read_verified(path):
    """The tensors and the manifest of the file, after the checksum passed."""
    name = os.fspath(path)
    data = Path(path).read_bytes()
    try:
        tensors = safetensors.numpy.load(data)
        header_size = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_size]).get("__metadata__") or {}
    # The bytes are untrusted: whatever the parser raises means a bad file.
    except Exception as exc:
        raise ValueError(
            f"{name!r} is not a valid safetensors file, so not an sktip model file "
            f"(it may be truncated or corrupted): {type(exc).__name__}: {exc}"
        ) from None
    if metadata.get("format") != FORMAT_NAME or "manifest" not in metadata:
        raise ValueError(
            f"{name!r} is a safetensors file but not an sktip model file: its "
            f"header has no {FORMAT_NAME!r} manifest."
        )

    manifest_text = metadata["manifest"]
    if metadata.get("sha256") != _checksum(manifest_text, tensors):
        raise ValueError(
            f"{name!r} fails its SHA-256 checksum: the file was corrupted or "
            "edited after it was saved."
        )
    try:
        manifest = json.loads(manifest_text)
        version = manifest["format_version"]
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise ValueError(f"{name!r} has an unreadable manifest: {exc}") from None
    if manifest.get("format") != FORMAT_NAME or type(version) is not int or version < 1:
        raise ValueError(f"{name!r} has a manifest of an unknown format.")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{name!r} uses format version {version}, newer than the version "
            f"{FORMAT_VERSION} this sktip reads; upgrade sktip to load it."
        )
    # Read-only views of the file's bytes; the estimator gets its own arrays.
    return {key: np.array(value) for key, value in tensors.items()}, manifest


def _write_atomically(path, data):
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _checksum(manifest_text, tensors):
    """SHA-256 of the manifest and every tensor, each framed by its length so
    that no two different contents hash the same bytes."""
    digest = hashlib.sha256(b"sktip-checksum-v1")

    def add(chunk):
        digest.update(len(chunk).to_bytes(8, "little"))
        digest.update(chunk)

    add(manifest_text.encode("utf-8", "surrogatepass"))
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        little_endian = array.astype(array.dtype.newbyteorder("<"), copy=False)
        add(json.dumps([name, little_endian.dtype.str, list(array.shape)]).encode())
        add(little_endian.tobytes())
    return digest.hexdigest()


# -- the estimator's state -------------------------------------------------


def _fitted_names(estimator):
    names = sorted(
        name
        for name in vars(estimator)
        if name.endswith("_") and not name.startswith("_")
    )
    unknown = [
        name
        for name in names
        if name not in (*_TENSORS, *_ATTRIBUTES, *_DROPPED_ATTRIBUTES, "classes_")
    ]
    if unknown:
        raise TypeError(
            f"{type(estimator).__name__} has fitted attribute(s) {unknown} that "
            f"format version {FORMAT_VERSION} of sktip.save does not store."
        )
    return [name for name in names if name not in _DROPPED_ATTRIBUTES]


def _stored_params(estimator):
    params = {}
    for name, value in sorted(estimator.get_params(deep=False).items()):
        if name in _UNSTORED_PARAMS:
            continue
        try:
            params[name] = _encode(value)
        except _NotStorable as exc:
            raise TypeError(
                f"Parameter {name}={value!r} cannot be stored: {exc}. sktip.save "
                "stores None, bool, int, float, str, NumPy scalars and arrays, "
                "and lists, tuples and mappings of those; set another value with "
                f"set_params({name}=...) before saving (an int or None for "
                "random_state and cv, which only matter for fitting)."
            ) from None
    return params


def _encode_labels(classes):
    kind = classes.dtype.kind
    if kind == "O":
        unsupported = sorted(
            {type(label).__name__ for label in classes if not _is_scalar(label)}
        )
    else:
        unsupported = [] if kind in _SCALAR_KINDS else [str(classes.dtype)]
    if unsupported:
        raise TypeError(
            f"classes_ holds labels of type {', '.join(unsupported)}; sktip.save "
            "stores str, int, float and bool labels and NumPy scalars of those "
            "types. Refit with labels of one of these types to save the model."
        )
    return _encode(classes)


def _encode_attribute(name, value):
    try:
        return _encode(value)
    except _NotStorable as exc:
        raise TypeError(f"Fitted attribute {name} cannot be stored: {exc}.") from None


def _rebuild(tensors, manifest):
    """The estimator described by a verified file, without its featurizer, and
    the saved featurizer identity."""
    estimator_name = manifest["estimator"]
    if estimator_name not in _ESTIMATORS:
        raise ValueError(f"unknown estimator class {estimator_name!r}")
    cls = _ESTIMATORS[estimator_name]
    unknown = sorted(set(tensors) - set(_TENSORS))
    if unknown:
        raise ValueError(f"unexpected tensors {unknown}")

    params = {name: _decode(value) for name, value in manifest["params"].items()}
    allowed = set(cls().get_params(deep=False)) - set(_UNSTORED_PARAMS)
    if set(params) - allowed:
        raise ValueError(f"unknown parameters {sorted(set(params) - allowed)}")
    if not isinstance(manifest["text_features_given"], bool):
        raise ValueError("text_features_given must be a bool")
    if manifest["text_features_given"] and "text_features_" not in tensors:
        raise ValueError("text_features was given but text_features_ is missing")
    attributes = {
        name: _decode(value) for name, value in manifest["attributes"].items()
    }
    if set(attributes) - set(_ATTRIBUTES):
        raise ValueError(
            f"unknown fitted attributes {sorted(set(attributes) - set(_ATTRIBUTES))}"
        )
    identity = manifest["featurizer"]
    if identity is not None and not isinstance(identity, dict):
        raise ValueError("the featurizer identity must be an object or null")

    estimator = cls()
    estimator.set_params(**params)
    if manifest["text_features_given"]:
        estimator.set_params(text_features=tensors["text_features_"].copy())
    # Parameter constraints catch values no estimator could have been fitted
    # with; the InvalidParameterError they raise is a ValueError.
    estimator._validate_params()

    state = dict(attributes, classes_=_decode(manifest["classes"]), **tensors)
    state.setdefault("text_features_", None)
    _check_state(
        cls,
        estimator.get_params(deep=False),
        state,
        featurizer_mode=identity is not None,
    )
    for name, value in state.items():
        setattr(estimator, name, value)
    return estimator, identity


def _check_state(cls, params, state, featurizer_mode):
    """Check the fitted attributes of a ``cls`` estimator against each other.

    Raises ``ValueError`` on the first inconsistency; used on what is about
    to be written as much as on what was read.
    """
    classes = state["classes_"]
    if not isinstance(classes, np.ndarray) or classes.ndim != 1 or len(classes) < 2:
        raise ValueError("classes_ must be a 1-d array of at least two labels")
    if len(set(classes.tolist())) != len(classes):
        raise ValueError("classes_ holds duplicate labels")
    n_classes = len(classes)

    keys = _float_matrix(state, "cache_keys_")
    n_support, n_features = keys.shape
    _one_hot(state, "cache_values_", n_support, n_classes)
    if state.get("text_features_") is not None:
        _float_matrix(state, "text_features_", (n_classes, n_features))

    tuned = [
        name for name in ("finetuned_keys_", *_FINETUNE_ATTRIBUTES) if name in state
    ]
    if params["finetune"] or tuned:
        missing = [
            name
            for name in ("finetuned_keys_", "finetuned_values_", *_FINETUNE_ATTRIBUTES)
            if name not in state
        ]
        if missing:
            raise ValueError(f"fine-tuned model without {missing}")
        tuned_keys = _float_matrix(state, "finetuned_keys_", (None, n_features))
        _one_hot(state, "finetuned_values_", len(tuned_keys), n_classes)
        n_iter = _integer(state, "n_iter_", minimum=0)
        loss_curve = _real_list(state, "loss_curve_")
        if len(loss_curve) != n_iter:
            raise ValueError("loss_curve_ must hold one loss per epoch of n_iter_")
        if state["validation_scores_"] is not None:
            _real_list(state, "validation_scores_")
        if state["best_validation_score_"] is not None:
            _real(state, "best_validation_score_")

    if issubclass(cls, TipAdapterClassifierCV):
        for name in ("alpha_", "beta_"):
            if _real(state, name) < 0:
                raise ValueError(f"{name} must be non-negative")
        _real(state, "best_score_", finite=False)
        _integer(state, "best_index_", minimum=0)
        _integer(state, "n_splits_", minimum=1)
    elif set(_SEARCH_ATTRIBUTES) & set(state):
        raise ValueError(f"{cls.__name__} has no search attributes")

    if not featurizer_mode and _integer(state, "n_features_in_", 1) != n_features:
        raise ValueError("n_features_in_ must equal the width of cache_keys_")
    names = state.get("feature_names_in_")
    if names is not None and (
        not isinstance(names, np.ndarray)
        or names.shape != (n_features,)
        or not all(isinstance(name, str) for name in names)
    ):
        raise ValueError("feature_names_in_ must hold one str per feature")


def _float_matrix(state, name, shape=(None, None)):
    array = state.get(name)
    if not isinstance(array, np.ndarray) or array.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be a float32 or float64 array")
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{name} must be a non-empty 2-d array, got {array.shape}")
    for expected, actual, what in zip(
        shape, array.shape, ("rows", "columns"), strict=True
    ):
        if expected is not None and actual != expected:
            raise ValueError(f"{name} must have {expected} {what}, got {actual}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _one_hot(state, name, n_rows, n_classes):
    values = _float_matrix(state, name, (n_rows, n_classes))
    if not (np.all((values == 0) | (values == 1)) and np.all(values.sum(axis=1) == 1)):
        raise ValueError(f"{name} must hold one-hot rows")


def _integer(state, name, minimum):
    value = state.get(name)
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool | np.bool_)
        or value < minimum
    ):
        raise ValueError(f"{name} must be an integer of at least {minimum}")
    return value


def _real(state, name, finite=True):
    value = state.get(name)
    if not isinstance(value, numbers.Real) or isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be a real number")
    if finite and not np.isfinite(value):
        raise ValueError(f"{name} must be finite")
    return value


def _real_list(state, name):
    values = state.get(name)
    if not isinstance(values, list) or not all(
        isinstance(value, numbers.Real) and not isinstance(value, bool)
        for value in values
    ):
        raise ValueError(f"{name} must be a list of real numbers")
    return values


# -- featurizer identity ---------------------------------------------------


def _featurizer_identity(featurizer):
    """What identifies the featurizer, as plain JSON data; ``None`` for none.

    Saving and loading compute it the same way, and compare the JSON forms.
    """
    if featurizer is None:
        return None
    if isinstance(featurizer, CLIPFeaturizer):
        identity = _clip_identity(featurizer)
    else:
        identity = {"kind": "custom", "class": type(featurizer).__qualname__}
        get_params = getattr(featurizer, "get_params", None)
        if callable(get_params):
            identity["params"] = {
                str(name): _encode_or_type(value)
                for name, value in sorted(get_params().items())
            }
    return json.loads(json.dumps(identity, sort_keys=True))


def _clip_identity(featurizer):
    loaded = featurizer._loaded()
    model_name = featurizer.model_name
    pretrained = featurizer.pretrained
    if isinstance(pretrained, os.PathLike):
        pretrained = os.fspath(pretrained)

    weights = None
    if model_name.startswith(LOCAL_DIR_PREFIX):
        folder = Path(model_name[len(LOCAL_DIR_PREFIX) :])
        weights = {
            path.name: _file_sha256(path)
            for path in sorted(folder.iterdir())
            if path.is_file()
            and (path.name == _LOCAL_DIR_CONFIG or path.suffix in _CHECKPOINT_SUFFIXES)
        }
        model_name = LOCAL_DIR_PREFIX
    if model_name.startswith((LOCAL_DIR_PREFIX, HF_HUB_PREFIX)):
        # open_clip ignores pretrained for these names, except that None
        # asks for random weights.
        pretrained = None if pretrained is None else "bundled"
    elif pretrained is not None and os.path.isfile(pretrained):
        weights = {"checkpoint": _file_sha256(Path(pretrained))}
        pretrained = "file"
    if pretrained is None:
        # Random weights follow torch's seed: only their values identify
        # them, and the loaded model's identity is a digest of those.
        weights = {"random": loaded.identity}

    return {
        "kind": "clip",
        "model_name": model_name,
        "pretrained": pretrained,
        "weights_sha256": weights,
        "precision": featurizer.precision,
        "preprocess_cfg": {
            str(key): _encode_or_type(value)
            for key, value in sorted(loaded.preprocess_cfg.items())
        },
        "embed_dim": int(featurizer.embed_dim),
    }


def _file_sha256(path):
    status = path.stat()
    key = (str(path.resolve()), status.st_size, status.st_mtime_ns)
    if key not in _file_digests:
        with open(path, "rb") as file:
            _file_digests[key] = hashlib.file_digest(file, "sha256").hexdigest()
    return _file_digests[key]


_MISSING = object()


def _differences(saved, given, where=""):
    """One ``"field: saved x, given y"`` line per leaf that differs."""
    if _is_plain_dict(saved) and _is_plain_dict(given):
        lines = []
        for key in sorted(set(saved) | set(given)):
            field = f"{where}[{key!r}]" if where else key
            lines += _differences(
                saved.get(key, _MISSING), given.get(key, _MISSING), field
            )
        return lines
    if saved == given:
        return []
    return [f"{where or 'featurizer'}: saved {_show(saved)}, given {_show(given)}"]


def _pick(identity, keys):
    return {key: identity[key] for key in keys if key in identity}


def _is_plain_dict(value):
    return isinstance(value, dict) and not set(value) & set(_TAGS)


def _show(value):
    if value is _MISSING:
        return "nothing"
    if isinstance(value, dict) and "__type__" in value:
        return f"an object of type {value['__type__']}"
    try:
        return repr(_decode(value))
    except (KeyError, TypeError, ValueError):
        return json.dumps(value)


# -- JSON encoding of values -----------------------------------------------


class _NotStorable(TypeError):
    pass


def _is_scalar(value):
    return type(value) in (bool, int, float, str) or (
        isinstance(value, np.generic) and value.dtype.kind in _SCALAR_KINDS
    )


def _encode(value):
    """``value`` as JSON data, tagged where JSON has no matching type."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in _SCALAR_KINDS:
        return {"__scalar__": value.item(), "dtype": value.dtype.str}
    if type(value) is list:
        return [_encode(item) for item in value]
    if type(value) is tuple:
        return {"__tuple__": [_encode(item) for item in value]}
    if isinstance(value, Mapping):
        return {"__mapping__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in _SCALAR_KINDS:
            items = value.ravel().tolist()
        elif value.dtype.kind == "O" and all(_is_scalar(item) for item in value.flat):
            items = [_encode(item) for item in value.flat]
        else:
            raise _NotStorable(f"arrays of dtype {value.dtype} are not supported")
        return {"__ndarray__": items, "dtype": value.dtype.str, "shape": value.shape}
    raise _NotStorable(f"values of type {type(value).__qualname__} are not supported")


def _encode_or_type(value):
    try:
        return _encode(value)
    except _NotStorable:
        return {"__type__": f"{type(value).__module__}.{type(value).__qualname__}"}


def _decode(value):
    """Invert :func:`_encode`; raises ``ValueError`` or ``TypeError`` on data
    that it cannot have written."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        raise ValueError(f"unexpected value {value!r}")
    keys = set(value)
    if keys == {"__tuple__"}:
        return tuple(_decode(item) for item in _as_list(value["__tuple__"]))
    if keys == {"__mapping__"}:
        return {
            _decode(key): _decode(item)
            for key, item in (_as_pair(pair) for pair in _as_list(value["__mapping__"]))
        }
    if keys == {"__scalar__", "dtype"}:
        dtype = _dtype(value["dtype"])
        if dtype.kind not in _SCALAR_KINDS or not _is_scalar(value["__scalar__"]):
            raise ValueError(f"unexpected scalar {value!r}")
        return dtype.type(value["__scalar__"])
    if keys == {"__ndarray__", "dtype", "shape"}:
        dtype = _dtype(value["dtype"])
        shape = tuple(_as_list(value["shape"]))
        items = [_decode(item) for item in _as_list(value["__ndarray__"])]
        if not all(_is_scalar(item) for item in items):
            raise ValueError("arrays may only hold scalars")
        if dtype.kind == "O":
            array = np.empty(len(items), dtype=object)
            array[:] = items
        else:
            array = np.array(items, dtype=dtype)
        return array.reshape(shape)
    raise ValueError(f"unexpected object with keys {sorted(keys)}")


def _as_list(value):
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {value!r}")
    return value


def _as_pair(value):
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"expected a [key, value] pair, got {value!r}")
    return value


def _dtype(text):
    if not isinstance(text, str) or not _DTYPE_PATTERN.fullmatch(text):
        raise ValueError(f"unsupported dtype {text!r}")
    return np.dtype(text)

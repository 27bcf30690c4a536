"""Loading open_clip models, once per process.

Estimators never hold a torch model: they ask this module for the model that
their parameters describe. Loaded models live in a small process-wide
registry, so that clones made by ``GridSearchCV`` or ``cross_val_score``
share one copy of the weights and pickles stay free of them.
"""

import contextlib
import hashlib
import json
import logging
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from sktip.exceptions import (
    PretrainedWeightsError,
    RandomWeightsWarning,
    _caller_stacklevel,
)

logger = logging.getLogger(__name__)

LOCAL_DIR_PREFIX = "local-dir:"
HF_HUB_PREFIX = "hf-hub:"

# Two models cover the common case (one backbone, maybe a second being
# compared) without letting a long session pile up gigabytes of weights.
_MAX_LOADED_MODELS = 2
_registry = OrderedDict()
_registry_lock = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides which weights are loaded, and where."""

    model_name: str
    pretrained: str | None
    precision: str
    device: str
    cache_dir: str | None = None
    # Size and modification time of local weight files: a checkpoint edited
    # in place is a different model, loaded anew and cached apart.
    weights_stamp: tuple = ()


@dataclass
class LoadedModel:
    """A ready-to-use open_clip model and what goes with it."""

    spec: ModelSpec
    model: object
    preprocess: object
    tokenizer: object
    preprocess_cfg: dict
    input_dtype: object
    autocast_dtype: object
    embed_dim: int
    identity: str
    # Counters of the work done, for diagnostics and tests.
    forward_calls: int = 0
    pictures_encoded: int = 0


def resolve_device(device):
    """Turn ``"auto"`` into ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    if device != "auto":
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def get_model(spec):
    """Return the :class:`LoadedModel` for ``spec``, loading it if needed."""
    with _registry_lock:
        loaded = _registry.get(spec)
        if loaded is not None:
            _registry.move_to_end(spec)
            return loaded
        loaded = _load(spec)
        _registry[spec] = loaded
        while len(_registry) > _MAX_LOADED_MODELS:
            _registry.popitem(last=False)
        return loaded


def clear_model_cache():
    """Forget every model loaded in this process, freeing its memory.

    The next use of a featurizer loads its model again.

    See Also
    --------
    clear_embedding_cache : Forget the embeddings kept in memory.

    Examples
    --------
    >>> import sktip
    >>> sktip.clear_model_cache()
    """
    with _registry_lock:
        _registry.clear()


def weights_stamp(model_name, pretrained):
    """Size and modification time of the local files holding the weights."""
    if model_name.startswith(LOCAL_DIR_PREFIX):
        folder = Path(model_name[len(LOCAL_DIR_PREFIX) :])
        paths = sorted(folder.iterdir()) if folder.is_dir() else []
    elif pretrained and os.path.isfile(pretrained):
        paths = [Path(pretrained)]
    else:
        return ()
    stamp = []
    for path in paths:
        if path.is_file():
            status = path.stat()
            stamp.append((str(path.resolve()), status.st_size, status.st_mtime_ns))
    return tuple(stamp)


def configured_embed_dim(model_name):
    """Embedding size read from the model's configuration, without weights.

    Returns ``None`` when the configuration is not available locally (an
    ``hf-hub:`` name, or an unknown model).
    """
    if model_name.startswith(LOCAL_DIR_PREFIX):
        config = Path(model_name[len(LOCAL_DIR_PREFIX) :]) / "open_clip_config.json"
        try:
            return int(json.loads(config.read_text())["model_cfg"]["embed_dim"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    if model_name.startswith(HF_HUB_PREFIX):
        return None
    import open_clip

    config = open_clip.get_model_config(model_name.replace("/", "-"))
    return None if config is None else int(config["embed_dim"])


def _load(spec):
    with _no_implicit_root_handler():
        return _load_quietly(spec)


def _load_quietly(spec):
    import open_clip
    import torch

    _check_device(spec)
    has_schema = spec.model_name.startswith((LOCAL_DIR_PREFIX, HF_HUB_PREFIX))
    random_weights = spec.pretrained is None
    if random_weights:
        warnings.warn(
            f"CLIPFeaturizer(model_name={spec.model_name!r}, pretrained=None) "
            "runs with random weights: its features carry no meaning, and a "
            "classifier built on them predicts close to chance.",
            RandomWeightsWarning,
            stacklevel=_caller_stacklevel(),
        )
    precision = spec.precision if spec.precision in ("fp16", "bf16") else "fp32"

    logger.info(
        "loading open_clip model %r (pretrained=%r)", spec.model_name, spec.pretrained
    )
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.model_name,
            pretrained=None if has_schema else spec.pretrained,
            load_weights=not random_weights,
            require_pretrained=not random_weights,
            precision=precision,
            device=spec.device,
            cache_dir=spec.cache_dir,
        )
    except Exception as exc:
        raise PretrainedWeightsError(_weights_error_message(spec, exc)) from exc
    model.eval()
    tokenizer = open_clip.get_tokenizer(spec.model_name)

    autocast_dtype = None
    if spec.device.startswith("cuda") and spec.precision == "amp":
        autocast_dtype = torch.float16
    elif spec.device.startswith("cuda") and spec.precision == "amp_bf16":
        autocast_dtype = torch.bfloat16
    input_dtype = next(model.visual.parameters()).dtype
    embed_dim = _embed_dim(model)
    preprocess_cfg = dict(getattr(model.visual, "preprocess_cfg", {}))
    digest = hashlib.blake2b(
        repr((spec, sorted(preprocess_cfg.items()))).encode(), digest_size=16
    )
    if random_weights:
        # Random weights differ from one load to the next (they follow torch's
        # seed), so only their values can identify them.
        for tensor in model.state_dict().values():
            digest.update(
                tensor.detach().cpu().contiguous().view(-1).numpy().view("u1")
            )
    identity = digest.hexdigest()
    logger.info(
        "loaded %r on %s, embed_dim=%d", spec.model_name, spec.device, embed_dim
    )
    return LoadedModel(
        spec=spec,
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        preprocess_cfg=preprocess_cfg,
        input_dtype=input_dtype,
        autocast_dtype=autocast_dtype,
        embed_dim=embed_dim,
        identity=identity,
    )


@contextlib.contextmanager
def _no_implicit_root_handler():
    """Keep open_clip's root-logger calls from configuring logging.

    ``logging.error(...)`` on an unconfigured root logger installs a stderr
    handler for the rest of the process. A temporary null handler prevents
    that; loggers the user configured still receive the records.
    """
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    if guard is not None:
        root.addHandler(guard)
    try:
        yield
    finally:
        if guard is not None:
            root.removeHandler(guard)


def _embed_dim(model):
    import torch

    size = model.visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    dtype = next(model.visual.parameters()).dtype
    device = next(model.visual.parameters()).device
    with torch.inference_mode():
        probe = torch.zeros((1, 3, *size), dtype=dtype, device=device)
        return int(model.encode_image(probe).shape[-1])


def _weights_error_message(spec, exc):
    name, pretrained = spec.model_name, spec.pretrained
    if name.startswith(LOCAL_DIR_PREFIX):
        where = (
            f"the folder {name[len(LOCAL_DIR_PREFIX) :]!r} must hold "
            "open_clip_config.json and a checkpoint (open_clip_pytorch_model.bin "
            "or open_clip_model.safetensors)"
        )
    elif pretrained and (
        os.path.sep in pretrained
        or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    ):
        where = f"the checkpoint file {pretrained!r} must exist and match the model"
    elif pretrained is None:
        where = "check the model name against open_clip.list_models()"
    else:
        where = (
            "the weights are downloaded from the model hub on first use; without "
            "network access, download them elsewhere and pass the file as "
            "pretrained='/path/to/checkpoint.pt' (or .safetensors), or use "
            "model_name='local-dir:/path/to/folder'"
        )
        tags = _known_tags(name)
        if tags and pretrained not in tags:
            where = f"{name!r} has the pretrained tags {tags}; " + where
    message = (
        f"Could not load CLIP model {name!r} with pretrained={pretrained!r}: "
        f"{type(exc).__name__}: {exc}. To fix: {where}."
    )
    if pretrained is not None:
        message += (
            " sktip never falls back to random weights; pass pretrained=None "
            "to ask for them explicitly."
        )
    return message


def _known_tags(model_name):
    import open_clip

    try:
        return list(open_clip.list_pretrained_tags_by_model(model_name))
    except Exception:  # noqa: BLE001 - only a hint for the message
        return []


def _check_device(spec):
    """Refuse a device torch cannot use, before any weights are loaded."""
    import torch

    try:
        device = torch.device(spec.device)
    except RuntimeError as exc:
        raise ValueError(
            f"device={spec.device!r} is not a torch device ({exc}); use 'auto', "
            "'cpu', 'cuda' or 'cuda:<index>'."
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={spec.device!r}, but torch sees no CUDA device here; use "
                "device='auto' to fall back to the CPU knowingly, or 'cpu'."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={spec.device!r}, but torch sees only "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    if spec.precision in ("fp16", "bf16") and device.type != "cuda":
        raise ValueError(
            f"precision={spec.precision!r} converts the weights to half precision, "
            "which the CPU does not run; use 'fp32' (or 'amp', which is fp32 on "
            "the CPU)."
        )

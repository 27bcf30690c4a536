"""
================================================
Few-shot defect classification of textile images
================================================

Zero-shot CLIP against Tip-Adapter on real image files, from the command line.

The images are the simulated textile textures of the ``conformal-clip-data``
package (250x250 JPEG files in three classes: ``nominal``, ``local`` defect,
``global`` defect). ``--shots`` images per class form the Tip-Adapter cache,
``--test-per-class`` other images per class are held out, and the script
prints the accuracy of zero-shot CLIP (``alpha=0``) and of Tip-Adapter on the
held-out images, the weights that were used and the time taken.

Every image is encoded once: fitting on the files encodes the augmented
views of the shots and the class prompts, scoring Tip-Adapter encodes the
held-out images, and zero-shot CLIP is the same fitted model at ``alpha=0``,
whose score finds those embeddings in the featurizer's memory cache.

When the pretrained weights cannot be had (no route to the model hub, a bad
checkpoint path), the first line printed says so and the script carries on
with random weights, so that the whole pipeline still runs; its accuracies
are then close to chance. sktip itself never falls back to random weights.

Run ``python examples/textile_few_shot.py --help`` for the options.
"""

import argparse
import contextlib
import logging
import os
import socket
import time
import urllib.parse
import warnings

import numpy as np

CLASS_NAMES = {
    "nominal": "defect-free textile",
    "local": "textile with a local defect",
    "global": "textile with a global defect",
}
TEMPLATES = ["a photo of a {}."]
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def parse_args():
    parser = argparse.ArgumentParser(
        description="Zero-shot CLIP against Tip-Adapter on the textile images."
    )
    parser.add_argument("--shots", type=int, default=16, help="cache images per class")
    parser.add_argument(
        "--test-per-class", type=int, default=50, help="held-out images per class"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="split, views, random weights"
    )
    parser.add_argument("--model", default="ViT-B-32", help="open_clip model name")
    parser.add_argument(
        "--pretrained",
        default="openai",
        help="open_clip pretrained tag, path of a local checkpoint file, or "
        "'none' for random weights",
    )
    parser.add_argument("--alpha", type=float, default=1.0, help="Tip-Adapter alpha")
    parser.add_argument("--beta", type=float, default=5.5, help="Tip-Adapter beta")
    parser.add_argument(
        "--augment-views", type=int, default=10, help="augmented views per shot"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.pretrained.lower() == "none":
        args.pretrained = None
    return args


def needs_hub(model, pretrained):
    """Whether loading these weights may download from the model hub."""
    if model.startswith("local-dir:"):
        return False
    if model.startswith("hf-hub:"):
        return True
    if pretrained is None:
        return False
    # A checkpoint path, even a mistyped one, never goes to the hub.
    is_path = os.sep in pretrained or pretrained.endswith(
        (".pt", ".pth", ".bin", ".safetensors")
    )
    return not is_path


def probe_hub(timeout=3.0):
    """Return why the model hub cannot be reached, or None if it can."""
    # Behind a proxy a direct connection proves nothing; let the download
    # itself decide.
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return None
    endpoint = urllib.parse.urlsplit(
        os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    )
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host} unreachable ({type(exc).__name__}: {exc})"
    return None


@contextlib.contextmanager
def quiet_loading():
    """Hide open_clip's log lines while a model loads.

    open_clip logs a failed download and random initialisation on the root
    logger; this script reports both itself, in its first line.
    """
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def one_line(exc):
    """First sentence of the root cause of ``exc``, at most 200 characters."""
    cause = exc.__cause__ or exc
    text = f"{type(cause).__name__}: {cause}".splitlines()[0]
    text = text.split(". ")[0].rstrip(".")
    if len(text) > 200:
        text = text[:197] + "..."
    return text


def load_featurizer(args, hub_problem):
    """A loaded ``CLIPFeaturizer`` and a description of its weights.

    Falls back to random weights, printing why first, when the requested
    ones cannot be loaded.
    """
    import torch

    from sktip import CLIPFeaturizer
    from sktip.exceptions import PretrainedWeightsError, RandomWeightsWarning

    # The first line printed already says when weights are random.
    warnings.filterwarnings("ignore", category=RandomWeightsWarning)
    # embedding_cache="memory" (the default, spelled out because main()
    # relies on it) lets the zero-shot score reuse the held-out embeddings.
    featurizer = CLIPFeaturizer(
        args.model,
        args.pretrained,
        batch_size=args.batch_size,
        embedding_cache="memory",
    )
    if args.pretrained is None:
        print("Random weights, as asked (--pretrained none).")
    else:
        try:
            with quiet_loading():
                featurizer.encode_text(["a photo."])  # loads the model
            if args.model.startswith(("local-dir:", "hf-hub:")):
                return featurizer, f"those of {args.model}"
            return featurizer, f"{args.model}, pretrained={args.pretrained!r}"
        except PretrainedWeightsError as exc:
            reason = hub_problem or one_line(exc)
            if not hub_problem and needs_hub(args.model, args.pretrained):
                if os.environ.get("HF_HUB_OFFLINE"):
                    reason += " (HF_HUB_OFFLINE is set)"
            print(
                f"Pretrained weights unavailable: {reason}. Continuing with "
                "RANDOM weights: the accuracies below are near chance."
            )
        featurizer.set_params(pretrained=None)
    # Seeded, so that a run with random weights can be repeated exactly.
    torch.manual_seed(args.seed)
    with quiet_loading():
        featurizer.encode_text(["a photo."])
    return featurizer, f"{args.model}, random (pretrained=None)"


def split_files(shots, test_per_class, seed):
    """Draw disjoint cache and held-out files for every class."""
    import conformal_clip_data as data

    folders = {
        "nominal": data.nominal_dir(),
        "local": data.local_dir(),
        "global": data.global_dir(),
    }
    rng = np.random.default_rng(seed)
    train, y_train, test, y_test = [], [], [], []
    for label, folder in folders.items():
        files = sorted(str(path) for path in folder.glob("*.jpg"))
        if len(files) < shots + test_per_class:
            raise SystemExit(
                f"class {label!r} has {len(files)} images, fewer than "
                f"{shots} shots + {test_per_class} held out."
            )
        files = [files[i] for i in rng.permutation(len(files))]
        train += files[:shots]
        y_train += [label] * shots
        test += files[shots : shots + test_per_class]
        y_test += [label] * test_per_class
    return train, np.array(y_train), test, np.array(y_test)


def main():
    start = time.perf_counter()
    args = parse_args()

    # huggingface_hub retries a failed lookup for about 47 s before giving
    # up; without a route to the hub, offline mode makes it fail at once
    # (or use weights already in the local cache). It is read on import, so
    # this comes before sktip and open_clip are imported.
    hub_problem = None
    if needs_hub(args.model, args.pretrained) and not os.environ.get("HF_HUB_OFFLINE"):
        hub_problem = probe_hub()
        if hub_problem:
            os.environ["HF_HUB_OFFLINE"] = "1"

    import torch

    from sktip import TipAdapterClassifier

    featurizer, weights = load_featurizer(args, hub_problem)
    loaded = time.perf_counter()

    train, y_train, test, y_test = split_files(
        args.shots, args.test_per_class, args.seed
    )
    print(
        f"Textile images: {len(CLASS_NAMES)} classes, {args.shots} shots and "
        f"{args.test_per_class} held-out images per class, seed {args.seed}."
    )
    print(f"Weights: {weights}.")

    # Fitting on files encodes the augmented views of the shots (the cache
    # keys) and the class prompts (the zero-shot classifier).
    tip = TipAdapterClassifier(
        featurizer,
        alpha=args.alpha,
        beta=args.beta,
        class_names=CLASS_NAMES,
        templates=TEMPLATES,
        augment_views=args.augment_views,
        random_state=args.seed,
    ).fit(train, y_train)
    fitted = time.perf_counter()

    # The featurizer keeps every embedding it computes in memory, so only
    # the first score encodes the held-out images; the zero-shot score (the
    # same fitted model at alpha=0) finds their embeddings there.
    tip_accuracy = tip.score(test, y_test)
    encoded = time.perf_counter()
    zero_shot_accuracy = tip.set_params(alpha=0.0).score(test, y_test)
    end = time.perf_counter()

    n_views = len(train) * max(args.augment_views, 1)
    if torch.cuda.is_available():
        device = "CUDA"
    else:
        device = f"CPU, {torch.get_num_threads()} threads"
    print(f"Zero-shot CLIP accuracy (alpha=0):  {zero_shot_accuracy:.3f}")
    print(
        f"Tip-Adapter accuracy (alpha={args.alpha:g}, beta={args.beta:g}): "
        f"{tip_accuracy:.3f}"
    )
    chance = np.unique(y_test, return_counts=True)[1].max() / len(y_test)
    print(f"Chance level (largest class share): {chance:.3f}")
    print(
        f"Time: {end - start:.1f} s in all; model {loaded - start:.1f} s, "
        f"cache of {n_views} views {fitted - loaded:.1f} s, "
        f"{len(test)} held-out images {encoded - fitted:.1f} s, zero-shot "
        f"scoring {end - encoded:.1f} s; {device}."
    )


if __name__ == "__main__":
    main()

"""Throughput of ``CLIPFeaturizer.transform`` against a bare forward pass.

``transform`` reads, decodes and preprocesses JPEG files in a ``DataLoader``
and runs the model on the batches. The baseline runs the same model object
on tensors decoded and preprocessed beforehand, with the same batch size and
number of threads, under ``torch.inference_mode``. Their ratio is the share
of the model's speed that the featurizer keeps; overheads such as decoding
show up as a ratio below 1.

The images are the textile JPEGs of ``conformal-clip-data`` (250x250) when
that package is installed, and scikit-learn's digits written as 256x256 JPEG
files otherwise. The default model has random weights: speed does not depend
on them, and no download is needed.

Run ``python benchmarks/bench_featurizer.py --help`` for the options.
"""

import argparse
import itertools
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from PIL import Image

from sktip import CLIPFeaturizer
from sktip.exceptions import RandomWeightsWarning


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B-32", help="open_clip model name")
    parser.add_argument(
        "--pretrained",
        default=None,
        help="pretrained tag or checkpoint file; random weights by default",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each; the best counts"
    )
    return parser.parse_args()


def image_files(n_images, folder):
    """Paths of ``n_images`` JPEG files, repeating files when there are few."""
    try:
        import conformal_clip_data as data

        paths = sorted(
            str(path)
            for directory in (data.nominal_dir(), data.local_dir(), data.global_dir())
            for path in directory.glob("*.jpg")
        )
        source = "conformal-clip-data textile JPEGs, 250x250"
    except ImportError:
        from sklearn.datasets import load_digits

        digits = (load_digits().images * (255 / 16)).round().astype(np.uint8)
        paths = []
        for index, pixels in enumerate(digits[:n_images]):
            path = os.path.join(folder, f"digit_{index:04d}.jpg")
            image = Image.fromarray(pixels, mode="L").resize((256, 256))
            image.convert("RGB").save(path, quality=90)
            paths.append(path)
        source = "scikit-learn digits as JPEG, 256x256"
    return list(itertools.islice(itertools.cycle(paths), n_images)), source


def preprocess_stages(paths, preprocess):
    """Decoded and preprocessed images, and the seconds spent per stage.

    An open_clip preprocessing is a torchvision ``Compose``; each of its
    transforms is timed on its own, which shows which step an overhead
    comes from.
    """
    stages = {}
    start = time.perf_counter()
    images = [Image.open(path).convert("RGB") for path in paths]
    stages["read+decode"] = time.perf_counter() - start
    for transform in getattr(preprocess, "transforms", [preprocess]):
        start = time.perf_counter()
        images = [transform(image) for image in images]
        stages[type(transform).__name__] = time.perf_counter() - start
    return torch.stack(images), stages


def time_featurizer(featurizer, paths):
    start = time.perf_counter()
    featurizer.transform(paths)
    return time.perf_counter() - start


def time_bare(model, pixels, batch_size):
    start = time.perf_counter()
    with torch.inference_mode():
        for begin in range(0, len(pixels), batch_size):
            model.encode_image(pixels[begin : begin + batch_size])
    return time.perf_counter() - start


def main():
    args = parse_args()
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    if args.pretrained is None:
        # Said once in the output instead of warned about.
        warnings.filterwarnings("ignore", category=RandomWeightsWarning)

    with tempfile.TemporaryDirectory() as folder:
        paths, source = image_files(args.n_images, folder)
        featurizer = CLIPFeaturizer(
            args.model,
            args.pretrained,
            device="cpu",
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            # Every timed call must encode: no embedding is reused.
            embedding_cache=None,
        )
        # The bare pass runs the featurizer's own model object, so that both
        # measure the same weights, dtype and device.
        loaded = featurizer._loaded()

        pixels, stages = preprocess_stages(paths, loaded.preprocess)

        # Warm-up: one batch each, so that one-off costs (first-call kernel
        # selection, page faults on the weights) fall outside the timings.
        featurizer.transform(paths[: args.batch_size])
        time_bare(loaded.model, pixels[: args.batch_size], args.batch_size)

        featurizer_times, bare_times = [], []
        for _ in range(args.repeats):
            featurizer_times.append(time_featurizer(featurizer, paths))
            bare_times.append(time_bare(loaded.model, pixels, args.batch_size))

    n = args.n_images
    featurizer_rate = n / min(featurizer_times)
    bare_rate = n / min(bare_times)
    weights = "random weights" if args.pretrained is None else args.pretrained
    print(f"model: {args.model} ({weights}), images: {n} {source}")
    print(
        f"batch size {args.batch_size}, {args.threads} torch threads, "
        f"num_workers {args.num_workers}, best of {args.repeats} runs"
    )
    print(
        "input pipeline, ms/img in this process: "
        + ", ".join(f"{name} {1000 * t / n:.2f}" for name, t in stages.items())
    )
    print(
        f"CLIPFeaturizer.transform: {featurizer_rate:6.2f} img/s  "
        f"(runs: {', '.join(f'{t:.2f}' for t in featurizer_times)} s)"
    )
    print(
        f"bare encode_image:        {bare_rate:6.2f} img/s  "
        f"(runs: {', '.join(f'{t:.2f}' for t in bare_times)} s)"
    )
    pair_ratios = np.array(bare_times) / np.array(featurizer_times)
    print(
        f"ratio transform / bare:   {featurizer_rate / bare_rate:.3f} "
        f"(best runs; median of run pairs {np.median(pair_ratios):.3f})"
    )
    # Other processes on the machine slow both sides unevenly; the load
    # average tells a quiet run from a noisy one.
    load_after = os.getloadavg()[0]
    print(f"load average (1 min) before / after: {load_before:.2f} / {load_after:.2f}")


if __name__ == "__main__":
    main()

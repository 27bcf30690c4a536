"""Throughput of ``predict`` over image files on a Dask cluster.

A ``TipAdapterClassifier`` fitted in this process predicts a few thousand
PNG files with ``sktip.dask.map_images`` on a ``LocalCluster`` of one, then
two, worker processes of one thread each, and, for comparison, with a plain
``predict`` call in this process. Every process runs one torch thread.

Each timed Dask run is paired with a local run just before it, so that both
see the same load from other processes; "speed vs local" is the ratio of
their best times (and the median of the pairs). With one worker it is the
cost of the Dask route itself (task scheduling, shipping the estimator and
paths, gathering the labels, and the workers' environment); with two it
shows how the route scales with processes. The clusters are started, and
every worker has loaded the model, before timing starts.

The workers run without Dask's default ``MALLOC_TRIM_THRESHOLD_=65536``,
as the "Scaling out" page recommends; a last row keeps Dask's default to
show what it costs.

The images are scikit-learn's digits written as PNG files (64x64, cycled,
with one pixel flipped per file so that no two files are the same); the
default model is a tiny random-weight CLIP (32x32 input) saved as an open_clip
``local-dir:`` folder, so no download is needed and reading and decoding
take a realistic share of the time. ``--model ViT-B-32`` runs a real
architecture, with random weights. No embedding cache is used: every timed
run encodes every image.

Usage::

    python benchmarks/bench_dask.py [--n-images 3000] [--chunk-size 250]
"""

import argparse
import logging
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits

from sktip import CLIPFeaturizer, TipAdapterClassifier
from sktip.exceptions import RandomWeightsWarning
from sktip.testing import save_tiny_clip


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=64, help="image side in px")
    parser.add_argument(
        "--model", default="tiny", help="'tiny' or an open_clip architecture"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=250, help="images/block")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each; the best counts"
    )
    return parser.parse_args()


def write_images(folder, n_images, size):
    """``n_images`` distinct PNG digits and their labels."""
    digits = load_digits()
    pixels = (digits.images * (255 / 16)).round().astype(np.uint8)
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for index in range(n_images):
        source = index % len(pixels)
        image = Image.fromarray(pixels[source], mode="L").resize((size, size))
        array = np.array(image)
        array[rng.integers(size), rng.integers(size)] ^= 0xFF
        path = os.path.join(folder, f"digit_{index:05d}.png")
        Image.fromarray(array).save(path)
        paths.append(path)
        labels.append(digits.target[source])
    return paths, np.array(labels)


def _load_model(featurizer):
    """Runs on a worker: load the model before the timing starts."""
    import torch

    torch.set_num_threads(1)
    featurizer._loaded()
    return torch.get_num_threads()


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def time_dask(clf, paths, n_workers, trim_memory, args):
    """Best seconds of the Dask route and of a local ``predict`` run in turn
    with it (so that both see the same load on the machine)."""
    import dask
    import distributed

    from sktip.dask import map_images

    logging.getLogger("distributed").setLevel(logging.WARNING)

    # Nannies set environment variables for their workers by writing them
    # into this process's environment first; undo that afterwards.
    environ = dict(os.environ)
    # Dask sets MALLOC_TRIM_THRESHOLD_=65536 for its workers by default;
    # ``None`` leaves glibc's adaptive default.
    trim = 65536 if trim_memory else None
    try:
        with (
            dask.config.set(
                {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": trim}
            ),
            distributed.LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            threads = client.run(_load_model, clf.featurizer)
            assert set(threads.values()) == {1}, threads
            result = map_images(clf, paths, chunk_size=args.chunk_size)
            # Warm-up: the estimator reaches every worker, and first calls
            # (kernel selection, page faults) fall outside the timings.
            labels = result.compute()
            local, remote = [], []
            for _ in range(args.repeats):
                local.append(timed(lambda: clf.predict(paths)))
                remote.append(timed(result.compute))
    finally:
        os.environ.clear()
        os.environ.update(environ)
    return np.array(local), np.array(remote), labels


def main():
    args = parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    warnings.filterwarnings("ignore", category=RandomWeightsWarning)
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as folder:
        if args.model == "tiny":
            model_name = save_tiny_clip(os.path.join(folder, "model"))
            pretrained = "openai"  # the default; ignored for local-dir: names
        else:
            model_name, pretrained = args.model, None
        paths, labels = write_images(folder, args.n_images, args.size)
        featurizer = CLIPFeaturizer(
            model_name,
            pretrained,
            device="cpu",
            batch_size=args.batch_size,
            embedding_cache=None,
        )
        shots = np.concatenate([np.flatnonzero(labels == c)[:4] for c in range(10)])
        clf = TipAdapterClassifier(featurizer, augment_views=0)
        clf.fit([paths[i] for i in shots], labels[shots])

        clf.predict(paths[: args.batch_size])  # warm-up
        expected = clf.predict(paths)
        rows = []
        for n_workers, trim_memory in ((1, False), (2, False), (1, True)):
            local, remote, predicted = time_dask(
                clf, paths, n_workers, trim_memory, args
            )
            assert np.array_equal(predicted, expected), "Dask predictions differ"
            rows.append((n_workers, trim_memory, local, remote))

    n = args.n_images
    print(
        f"model: {args.model} (random weights), {n} PNG images of "
        f"{args.size}x{args.size} px, batch size {args.batch_size}, "
        f"{args.chunk_size} images per Dask block, 1 torch thread per process, "
        f"{os.cpu_count()} CPUs, best of {args.repeats} runs, each Dask run "
        "paired with a local predict run just before it"
    )
    print(f"{'route':44s} {'img/s':>8s} {'local img/s':>12s} {'speed vs local':>15s}")
    speeds = {}
    for n_workers, trim_memory, local, remote in rows:
        name = f"dask, {n_workers} worker{'s' * (n_workers > 1)}"
        if trim_memory:
            name += ", Dask's MALLOC_TRIM_THRESHOLD_=65536"
        speeds[name] = n / remote.min()
        print(
            f"{name:44s} {n / remote.min():8.1f} {n / local.min():12.1f} "
            f"{local.min() / remote.min():8.3f} (median of pairs "
            f"{np.median(local / remote):.3f})"
        )
    one, two = speeds["dask, 1 worker"], speeds["dask, 2 workers"]
    print(f"dask 2 workers / 1 worker (speed): {two / one:.3f}")
    load_after = os.getloadavg()[0]
    print(f"load average (1 min) before / after: {load_before:.2f} / {load_after:.2f}")


if __name__ == "__main__":
    main()

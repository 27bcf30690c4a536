"""Time Tip-Adapter-F fine-tuning against a plain torch loop of the reference.

Both runs train the cache keys on the same synthetic ImageNet-scale
embeddings (16 shots x 1000 classes, 1024 dimensions by default) with the
same hyper-parameters, one after the other in this process. The reference
loop is written as the reference code computes: a bias-free linear adapter
initialised from the keys, a dense product with the one-hot values, the
zero-shot logits recomputed for every batch.

Peak memory is the largest resident set size seen while each run lasts,
minus the resident size before it, sampled every 5 ms.

Usage::

    python benchmarks/bench_finetune.py [--epochs 20] [--classes 1000]
"""

import argparse
import math
import os
import threading
import time

import numpy as np
import torch

from sktip import TipAdapterClassifier


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    X, y, text = synthetic_embeddings(args.classes, args.shots, args.dim)
    print(
        f"{len(X)} shots ({args.shots} x {args.classes} classes), {args.dim} dims, "
        f"{args.epochs} epochs, batch {args.batch_size}, {args.threads} threads"
    )

    classifier = TipAdapterClassifier(
        alpha=1.0,
        beta=5.5,
        text_features=text,
        finetune=True,
        max_iter=args.epochs,
        batch_size=args.batch_size,
        random_state=0,
    )
    sktip_seconds, sktip_peak = measure(lambda: classifier.fit(X, y))
    reference_seconds, reference_peak = measure(
        lambda: reference_loop(X, y, text, args.epochs, args.batch_size)
    )

    print(f"sktip      {sktip_seconds:8.1f} s   peak +{sktip_peak:7.0f} MiB")
    print(f"reference  {reference_seconds:8.1f} s   peak +{reference_peak:7.0f} MiB")
    print(f"time ratio sktip / reference: {sktip_seconds / reference_seconds:.3f}")
    print(f"memory ratio sktip / reference: {sktip_peak / reference_peak:.3f}")


def synthetic_embeddings(n_classes, shots, dim, seed=0):
    """Clustered unit vectors: one centre per class, shots scattered around."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, dim), dtype=np.float32)
    y = np.repeat(np.arange(n_classes), shots)
    X = centers[y] + 2.0 * rng.standard_normal((len(y), dim), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    text = centers + rng.standard_normal(centers.shape, dtype=np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    return X, y, text


def reference_loop(X, y, text, epochs, batch_size, alpha=1.0, beta=5.5):
    """The reference's training loop on fixed features."""
    generator = torch.Generator().manual_seed(0)
    features, labels = torch.from_numpy(X), torch.from_numpy(y)
    values = torch.nn.functional.one_hot(labels).float()
    weights = torch.from_numpy(text).T
    adapter = torch.nn.Linear(X.shape[1], X.shape[0], bias=False)
    adapter.weight = torch.nn.Parameter(features.clone())
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=1e-3, eps=1e-4)
    n_batches = math.ceil(len(X) / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, epochs * n_batches
    )
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), batch_size):
            batch = order[start : start + batch_size]
            image_features = features[batch]
            affinity = adapter(image_features)
            cache_logits = ((-1) * (beta - beta * affinity)).exp() @ values
            clip_logits = 100.0 * image_features @ weights
            logits = clip_logits + cache_logits * alpha
            loss = torch.nn.functional.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    return adapter.weight.detach()


def measure(run):
    """Wall time and peak extra resident memory (MiB) of ``run()``."""
    baseline = resident_mib()
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.wait(0.005):
            peak[0] = max(peak[0], resident_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return seconds, max(peak[0], resident_mib()) - baseline


def resident_mib():
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


if __name__ == "__main__":
    main()

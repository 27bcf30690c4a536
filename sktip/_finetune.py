"""Tip-Adapter-F: fine-tuning the cache keys with torch.

The update rule is the reference's: the keys start as a copy of the
training-free keys and are the only trainable tensor; the loss is the
cross-entropy of the Tip logits at fixed ``alpha`` and ``beta``; AdamW with
weight decay updates them, under a cosine schedule stepped every batch.

Two things make it cheaper than the reference without changing the rule:

* features are computed once. The reference re-augments and re-encodes
  every image with CLIP in every epoch; here each epoch draws one of the
  views encoded while the cache was built;
* the cache values are one-hot, so ``exp(...) @ values`` is a sum of each
  class's columns. ``index_add`` does that in O(batch x n_support) instead
  of the O(batch x n_support x n_classes) dense product, which dominates
  the reference's cost at ImageNet scale.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from sktip._cache import CLIP_LOGIT_SCALE


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced."""

    keys: np.ndarray
    loss_curve: list = field(default_factory=list)
    n_iter: int = 0
    validation_scores: list | None = None
    best_validation_score: float | None = None


def tip_logits_torch(features, keys, key_classes, n_classes, alpha, beta, clip):
    """Tip logits in torch, with the one-hot product done by ``index_add``.

    Parameters
    ----------
    features : Tensor of shape (batch, d)
    keys : Tensor of shape (n_support, d)
    key_classes : LongTensor of shape (n_support,)
        Class index of every key (the argmax of its one-hot value).
    n_classes : int
    alpha, beta : float
    clip : Tensor of shape (batch, n_classes) or None
        Zero-shot logits; ``None`` for a cache-only model.
    """
    affinity = features @ keys.T
    votes = torch.exp(-(beta - beta * affinity))
    cache = votes.new_zeros((len(features), n_classes)).index_add_(
        1, key_classes, votes
    )
    if clip is None:
        return cache * alpha
    return clip + cache * alpha


def finetune_keys(
    keys,
    key_classes,
    n_classes,
    text_weights,
    train_features,
    train_classes,
    *,
    alpha,
    beta,
    max_iter,
    batch_size,
    learning_rate_init,
    epsilon,
    weight_decay,
    seed,
    device="cpu",
    validation=None,
    n_iter_no_change=10,
    tol=1e-4,
    verbose=0,
):
    """Fine-tune cache keys with the reference's update rule.

    Parameters
    ----------
    keys : ndarray of shape (n_support, d)
        Training-free keys; copied, never modified.
    key_classes : ndarray of shape (n_support,)
        Class index of every key.
    n_classes : int
    text_weights : ndarray of shape (n_classes, d) or None
    train_features : ndarray of shape (n_train, n_views, d)
        L2-normalised training features; every epoch uses one view of each
        sample, drawn at random.
    train_classes : ndarray of shape (n_train,)
        Class index of every training sample.
    alpha, beta : float
        Residual ratio and sharpness, fixed during training.
    max_iter : int
        Number of epochs, and the length of the cosine schedule.
    batch_size : int
    learning_rate_init, epsilon, weight_decay : float
        AdamW's learning rate, eps and decoupled weight decay.
    seed : int
        Seed of the shuffling and of the view draws.
    device : str, default="cpu"
    validation : tuple of (ndarray, ndarray) or None, default=None
        Features (n_val, d) and class indices (n_val,) of held-out samples.
        When given, the keys of the epoch with the best validation accuracy
        are kept, and training stops after ``n_iter_no_change`` epochs
        without an improvement of at least ``tol``.
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    verbose : int, default=0
        Show a progress bar with the loss of every epoch when positive.

    Returns
    -------
    result : FinetuneResult
    """
    generator = torch.Generator().manual_seed(int(seed))
    as_tensor = _tensor_factory(device)

    adapter = torch.nn.Parameter(as_tensor(keys).clone())
    key_classes = as_tensor(key_classes, torch.long)
    features = as_tensor(train_features)
    labels = as_tensor(train_classes, torch.long)
    text = None if text_weights is None else as_tensor(text_weights)
    n_samples, n_views = features.shape[:2]

    # With a single view the zero-shot logits never change: compute them once.
    fixed_clip = None
    if text is not None and n_views == 1:
        fixed_clip = (CLIP_LOGIT_SCALE * features[:, 0]) @ text.T

    n_batches = math.ceil(n_samples / batch_size)
    optimizer = torch.optim.AdamW(
        [adapter], lr=learning_rate_init, eps=epsilon, weight_decay=weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max_iter * n_batches
    )

    result = FinetuneResult(keys=None)
    if validation is not None:
        result.validation_scores = []
        best_keys, no_improvement = adapter.detach().clone(), 0
        result.best_validation_score = -np.inf
    epochs = tqdm(range(max_iter), disable=verbose <= 0, desc="fine-tuning", unit="ep")
    for _ in epochs:
        order = torch.randperm(n_samples, generator=generator).to(device)
        views = torch.randint(n_views, (n_samples,), generator=generator).to(device)
        epoch_loss = 0.0
        for start in range(0, n_samples, batch_size):
            batch = order[start : start + batch_size]
            batch_features = features[batch, views[batch]]
            if fixed_clip is not None:
                clip = fixed_clip[batch]
            elif text is not None:
                clip = (CLIP_LOGIT_SCALE * batch_features) @ text.T
            else:
                clip = None
            logits = tip_logits_torch(
                batch_features, adapter, key_classes, n_classes, alpha, beta, clip
            )
            loss = torch.nn.functional.cross_entropy(logits, labels[batch])

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            epoch_loss += loss.item() * len(batch)

        result.loss_curve.append(epoch_loss / n_samples)
        result.n_iter += 1
        epochs.set_postfix(loss=f"{result.loss_curve[-1]:.4f}")

        if validation is None:
            continue
        score = _accuracy(
            adapter, key_classes, n_classes, text, alpha, beta, validation, as_tensor
        )
        result.validation_scores.append(score)
        if score > result.best_validation_score + tol:
            result.best_validation_score = score
            best_keys, no_improvement = adapter.detach().clone(), 0
        else:
            no_improvement += 1
            if no_improvement >= n_iter_no_change:
                break

    final = adapter.detach() if validation is None else best_keys
    result.keys = final.cpu().numpy()
    return result


def _accuracy(
    adapter, key_classes, n_classes, text, alpha, beta, validation, as_tensor
):
    features, classes = as_tensor(validation[0]), as_tensor(validation[1], torch.long)
    with torch.no_grad():
        clip = None if text is None else (CLIP_LOGIT_SCALE * features) @ text.T
        logits = tip_logits_torch(
            features, adapter, key_classes, n_classes, alpha, beta, clip
        )
    return float((logits.argmax(dim=1) == classes).float().mean())


def _tensor_factory(device):
    def as_tensor(array, dtype=torch.float32):
        return torch.as_tensor(np.asarray(array), dtype=dtype, device=device)

    return as_tensor

"""DSE, Dense representation Structure Estimator (diagnostic protocol ``dse``, version 2).

Dai, Xu, Wen, Liu, Huang, "Exploring Structural Degradation in Dense Representations for
Self-supervised Learning", NeurIPS 2025 (arXiv 2510.17299); reference ``EldercatSAM/SSL-Degradation``
``estimator.py`` ``compute_DSE`` (methods §6.5 and §9). Label-free: on val patch features
``X (B, N, d)`` (optionally L2-normalised),

* ``avg_l2``: mean L2 distance of the patches to their global mean;
* ``m_intra_image``: per image, k-means with ``local_clusters``; mean over clusters of the centred
  singular-value sum ``Σσ(X_c - mean_c) / sqrt(max(n_c - 1, d))`` (1 for an image without a cluster of
  two or more patches); mean over images;
* per group of ``group_size`` images, k-means with ``global_clusters``: ``m_inter`` = mean distance of
  every patch to the nearest centroid *other than its own*, averaged over groups; ``m_intra_batch`` =
  the mean spread over **all** clusters of all groups pooled (1 when there is none);
* ``m_dim``: each image's patches are put in their own random order (one permutation per image); for
  every position, the effective rank ``exp(H(σ / Σσ)) / min(B, d)`` of the ``(B, d)`` matrix of the
  patches at that position across images; mean over positions;
* ``dse = m_inter / avg_l2 + m_dim - (m_intra_batch + m_intra_image) / (2 avg_l2)``
  (higher = better dense structure; the paper's cross-checkpoint λ rescaling is not applied).

k-means follows the reference: k-means++ seeding with probabilities proportional to the distance (not
squared), a fixed number of Lloyd iterations, labels taken from before the last centroid update (an
empty cluster keeps its centroid; clusters of fewer than two patches have no spread and are skipped).
The reference re-seeds the global RNG; here every k-means and then the permutations draw from one
explicit seeded generator.

Versions: ``dse@1`` compared the same patch index across images in ``m_dim`` (biased: a patch index is
a position, and positions share structure across images) and averaged ``m_intra_batch`` per group
before averaging over groups.

A diagnostic: ``settings["diagnostic"] = True`` and the class attribute ``diagnostic = True``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from dssl.evaluators.base import DenseEvaluator, EvaluationInputs, Measurement, dataset_info
from dssl.evaluators.diagnostics_config import DSEOptions
from dssl.results import MetricValue

#: Shuffled patch positions whose (B, d) matrices are gathered and decomposed together in ``m_dim``.
_POSITIONS_PER_BLOCK = 64


def dse_kmeans(x: Tensor, k: int, iters: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The reference's k-means: distance-proportional k-means++ seeding and ``iters`` Lloyd steps.

    Args:
        x: ``(n, d)`` float64 points.
        k: Clusters (capped at ``n``).

    Returns:
        ``(centroids (k, d), labels (n,))``; labels are those assigned before the last centroid update.
    """
    n = x.shape[0]
    k = min(k, n)
    first = int(torch.randint(n, (1,), generator=generator))
    centroids = x[first : first + 1]
    for _ in range(k - 1):
        dist = torch.cdist(x, centroids).min(dim=1).values
        total = float(dist.sum())
        probs = dist / total if total > 0 else torch.full((n,), 1.0 / n, dtype=x.dtype)
        nxt = int(torch.multinomial(probs, 1, generator=generator))
        centroids = torch.cat([centroids, x[nxt : nxt + 1]])
    labels = torch.zeros(n, dtype=torch.int64)
    for _ in range(iters):
        labels = torch.cdist(x, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
    return centroids, labels


def centred_singular_sum(x: Tensor) -> float:
    """``Σσ(X - mean) / sqrt(max(n - 1, d))`` of ``(n, d)`` points."""
    n, d = x.shape
    return float(torch.linalg.svdvals(x - x.mean(dim=0, keepdim=True)).sum()) / math.sqrt(max(n - 1, d))


def _cluster_spread(x: Tensor, labels: Tensor) -> list[float]:
    return [centred_singular_sum(x[labels == c]) for c in labels.unique() if int((labels == c).sum()) > 1]


def compute_dse(
    feats: Tensor,
    *,
    local_clusters: int = 3,
    global_clusters: int = 24,
    group_size: int = 8,
    iters: int = 20,
    normalize: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """DSE and its terms for ``(B, N, d)`` patch features (see the module docstring)."""
    # One float64 copy, normalised in place (the same division F.normalize does, without a second copy:
    # at 512 images x 784 patches x 384 dims every copy is 1.2 GB).
    x = feats.to(torch.float64, copy=True)
    if normalize:
        x.div_(x.norm(dim=2, keepdim=True).clamp_min(1e-12))
    b, n, d = x.shape
    generator = torch.Generator().manual_seed(seed)
    flat = x.reshape(-1, d)
    avg_l2 = float((flat - flat.mean(dim=0)).norm(dim=1).mean())

    intra_image = []
    for i in range(b):
        _, labels = dse_kmeans(x[i], local_clusters, iters, generator)
        spreads = _cluster_spread(x[i], labels)
        # The reference counts an image without a cluster of two or more patches as spread 1.
        intra_image.append(sum(spreads) / len(spreads) if spreads else 1.0)

    inter, batch_spreads = [], []
    for start in range(0, b, group_size):
        group = x[start : start + group_size].reshape(-1, d)
        centroids, labels = dse_kmeans(group, global_clusters, iters, generator)
        if centroids.shape[0] > 1:
            dist = torch.cdist(group, centroids)
            dist[torch.arange(len(group)), labels] = math.inf
            inter.append(float(dist.min(dim=1).values.mean()))
        # Pooled over the clusters of every group (not a mean of per-group means): a group with fewer
        # usable clusters weighs less, as in the reference.
        batch_spreads.extend(_cluster_spread(group, labels))

    # Each image's patches in its own random order, so that row p of the (B, d) matrices holds unrelated
    # patches (the same patch index across images would share its position and bias the rank).
    order = torch.stack([torch.randperm(n, generator=generator) for _ in range(b)])  # (B, N)
    # One (B, d) matrix per shuffled position, gathered a block of positions at a time (each matrix's
    # singular values do not depend on the block, so this equals one batched call without a full copy).
    sigma = torch.cat(
        [
            torch.linalg.svdvals(x.gather(1, cols[..., None].expand(-1, -1, d)).transpose(0, 1))
            for cols in order.split(_POSITIONS_PER_BLOCK, dim=1)
        ]
    )  # (N, min(B, d))
    p = sigma / sigma.sum(dim=1, keepdim=True).clamp(min=1e-12)
    entropy = -(p * (p + 1e-12).log()).sum(dim=1)
    m_dim = float((entropy.exp() / min(b, d)).mean())

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    m_inter, m_intra_image = mean(inter), mean(intra_image)
    m_intra_batch = mean(batch_spreads) if batch_spreads else 1.0  # the reference's value without any cluster
    scale = max(avg_l2, 1e-12)
    dse = m_inter / scale + m_dim - (m_intra_batch + m_intra_image) / (2.0 * scale)
    return {
        "dse": dse,
        "m_inter": m_inter,
        "m_intra_batch": m_intra_batch,
        "m_intra_image": m_intra_image,
        "m_dim": m_dim,
        "avg_l2": avg_l2,
    }


class DSEEvaluator(DenseEvaluator[DSEOptions]):
    """DSE of frozen val patch features (a label-free diagnostic).

    Example:
        >>> ev = DSEEvaluator()  # doctest: +SKIP
        >>> ev.evaluate(features=fn, train=tr, val=va, dataset_name="voc").metrics["dse"]  # doctest: +SKIP
    """

    name: ClassVar[str] = "dse"
    protocol: ClassVar[str] = "dse"
    protocol_version: ClassVar[int] = 2
    diagnostic: ClassVar[bool] = True
    options_model: ClassVar[type[DSEOptions]] = DSEOptions

    def measure(self, inputs: EvaluationInputs) -> Measurement:
        """Compute DSE on (at most ``max_images``) val images; ``train`` is unused."""
        opts = self.options
        info = dataset_info(inputs.val, "val")
        # Diagnostics measure float32 features whatever the cache dtype option says.
        cache = self.extract(inputs, "val", info=info, dtype=torch.float32, limit=opts.max_images)
        n = len(cache.features)
        values = compute_dse(
            cache.features.reshape(n, -1, cache.dim),
            local_clusters=opts.local_clusters,
            global_clusters=opts.global_clusters,
            group_size=opts.group_size,
            iters=opts.kmeans_iters,
            normalize=opts.normalize,
            seed=opts.seed,
        )
        directions = {"m_intra_batch": "lower", "m_intra_image": "lower"}
        metrics = {k: MetricValue(value=v, direction=directions.get(k, "higher")) for k, v in values.items()}
        settings = {
            "local_clusters": opts.local_clusters,
            "global_clusters": opts.global_clusters,
            "group_size": opts.group_size,
            "kmeans_iters": opts.kmeans_iters,
            "kmeans_init": "k-means++ (distance-proportional)",
            "m_dim_patch_order": "random permutation per image",
            "m_intra_batch_mean": "over all clusters of all groups",
            "normalize": opts.normalize,
            "lambda_rescaling": "none",
            "seed": opts.seed,
            "val_images": n,
            **self.feature_settings(cache),
        }
        return metrics, settings

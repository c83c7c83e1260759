"""Hummingbird dense nearest-neighbour retrieval ("in-context" segmentation), protocol ``hummingbird@2``.

After ``vpariza/open-hummingbird-eval`` 2.0.0 ``hbird/hbird_eval.py`` and ``hbird/utils/eval_metrics.py``:

1. **Memory.** Every training image is passed through the frozen feature function once; its mask
   (ignore pixels relabelled to class 0, as the reference does) is pooled into one *soft label* per
   patch, the fraction of the patch's pixels of each class. With a bounded ``memory_size`` each image
   keeps the ``memory_size // N_train`` patches with the smallest score, ``score = Σ_{c in patch}
   (#patches of the image containing c) · u``, where ``u`` is the patch's own uniform draw (one
   ``rand(n)`` per batch over its non-empty patches, handed out to the images in order), so patches of
   rare classes are kept preferentially but not deterministically. Memory features are L2-normalised.
2. **Query.** Every val patch retrieves its ``k`` (30) most similar memory patches (inner product =
   cosine), and its label is ``Σ_j softmax(cos_j / T)_j · soft_label_j`` with ``T = 0.02``.
3. **Scoring.** Label maps ``(C, h, w)`` are bilinearly upsampled (``align_corners=False``) to the mask
   resolution, argmax, and streamed into a confusion matrix (val ignore pixels dropped). As the
   reference's ``PredsmIoU.compute()``: Hungarian matching of predicted to true classes (``1 - IoU``
   cost, unmatched predictions to class 0) and every class in the mean (a class with neither ground
   truth nor prediction scores 0). ``matching="none"`` and another ``absent_classes`` are options.

Versions: ``hummingbird@1`` multiplied a whole batch's scores by one scalar (which never changes the
order), scored class ids without matching and left classes absent from the val ground truth out of the
mean; ``HummingbirdOptions(sampling_noise="per_batch", matching="none", absent_classes="exclude_no_gt")``
reproduces it.

Search and its memory: exact inner-product search in torch, in blocks of ``Q = query_chunk_size``
queries x ``M = memory_chunk_size`` memory rows, keeping a running top-k. Besides the memory bank itself
(``N_mem * (D + C) * 4`` bytes) the peak extra memory of the search is about::

    peak_bytes ≈ 4·Q·M            (similarity block)
               + 2·12·Q·k         (running and block top-k values float32 + indices int64)
               + 4·Q·k·C          (gathered neighbour soft labels)

e.g. Q = 4096, M = 65536, k = 30, C = 21: ≈ 1.07 GB + 2.9 MB + 10 MB. When ``faiss`` is importable
(``search="auto"``/``"faiss"``) an exact ``IndexFlatIP`` gives the same neighbours (up to ties).

Deliberate difference: no augmentation epochs when building the memory (features are extracted once).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from dssl.errors import ConfigError
from dssl.evaluators.base import DenseEvaluator, EvaluationInputs, Measurement, paired_info
from dssl.evaluators.confusion import ConfusionMatrix, apply_mapping, hungarian_match, miou, pixel_accuracy
from dssl.evaluators.extraction import DatasetInfo, FeatureFn, ProgressFn, batches, extract_dense
from dssl.evaluators.hummingbird_config import HummingbirdOptions
from dssl.evaluators.patch_labels import patch_class_fractions
from dssl.results import MetricValue

try:  # optional accelerated search; results equal the torch path (exact inner-product index)
    import faiss  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    faiss = None


def patch_soft_labels(masks: Tensor, grid_hw: tuple[int, int], num_classes: int, ignore_index: int | None) -> Tensor:
    """Fraction of each class's pixels per patch.

    Args:
        masks: ``(B, H, W)`` integer masks at input resolution.
        grid_hw: Feature grid ``(h, w)``.
        num_classes: ``C``.
        ignore_index: Relabelled to class 0 first (the reference's ``255 -> 0``).

    Returns:
        ``(B, h*w, C)`` float32 soft labels (rows sum to 1).
    """
    labels = masks.to(torch.int64)
    if ignore_index is not None:
        labels = torch.where(labels == ignore_index, 0, labels)
    # Per-patch label counts (no (B, H, W, C) one-hot: that is 242 MB per 448 px image at C = 151).
    return patch_class_fractions(labels, grid_hw, num_classes)


def reference_sampling_noise(soft: Tensor, generator: torch.Generator) -> Tensor:
    """The reference's score noise for one batch: one uniform draw per non-empty patch.

    open-hummingbird-eval 2.0.0 ``_sample_features`` draws ``torch.rand(n)`` once per batch, ``n`` = the
    number of non-empty patches of the whole batch, and hands the values out in order: image 0's
    non-empty patches first (in patch order), then image 1's, and so on. Empty patches keep 1.

    Args:
        soft: ``(B, N, C)`` soft labels of the patches of ``B`` images.
        generator: Source of the draws.

    Returns:
        ``(B, N)`` float32 multipliers.
    """
    nonempty = (soft > 0).any(dim=2)
    noise = torch.ones(nonempty.shape, dtype=torch.float32)
    # Boolean-mask assignment fills the selected positions in row-major order, i.e. image by image.
    noise[nonempty] = torch.rand(int(nonempty.sum()), generator=generator)
    return noise


#: Score of a patch without any labelled pixel: never kept before a labelled one (the reference's sentinel).
EMPTY_PATCH_SCORE = 1e6


def select_memory_patches(soft: Tensor, keep: int, noise: Tensor | None = None) -> Tensor:
    """Indices of the ``keep`` patches per image with the smallest class-frequency score.

    ``score(patch) = Σ_{c in patch} (#patches of the image containing c)``, times ``noise``; a patch with
    no class gets :data:`EMPTY_PATCH_SCORE` (before the noise, as the reference).

    Args:
        soft: ``(B, N, C)`` soft labels of the patches of ``B`` images.
        keep: Patches kept per image (``<= N``).
        noise: Optional multiplier broadcastable to ``(B, N)`` (uniform noise).

    Returns:
        ``(B, keep)`` int64 patch indices, smallest score first; ties go to the lower index (stable sort).
    """
    present = (soft > 0).to(torch.float32)  # (B, N, C)
    patches_with_class = present.sum(dim=1, keepdim=True)  # (B, 1, C)
    score = (present * patches_with_class).sum(dim=2)  # (B, N)
    score = torch.where(present.sum(dim=2) > 0, score, EMPTY_PATCH_SCORE)
    if noise is not None:
        score = score * noise
    return torch.sort(score, dim=1, stable=True).indices[:, :keep]


def faiss_flat_index(memory: Tensor) -> object:
    """An exact faiss ``IndexFlatIP`` holding the ``(M, D)`` memory rows (a float32 copy on the CPU).

    Build it once per evaluation and pass it to :func:`knn_search` / :func:`transfer_labels` as ``index``:
    building it copies the whole memory bank, which per query block would repeat that copy hundreds of times.
    """
    index = faiss.IndexFlatIP(memory.shape[1])
    index.add(memory.detach().to("cpu", torch.float32).contiguous().numpy())
    return index


def knn_search(
    memory: Tensor,
    query: Tensor,
    k: int,
    *,
    memory_chunk_size: int = 65_536,
    use_faiss: bool = False,
    index: object | None = None,
) -> tuple[Tensor, Tensor]:
    """Exact top-``k`` inner-product search of ``query`` rows in ``memory``.

    Args:
        memory: ``(M, D)`` float32.
        query: ``(Q, D)`` float32.
        k: Neighbours (``<= M``).
        memory_chunk_size: Memory rows per similarity block (torch path).
        use_faiss: Use a faiss ``IndexFlatIP`` (exact) instead of torch.
        index: A prebuilt :func:`faiss_flat_index` of ``memory`` (faiss path; built here when ``None``).

    Returns:
        ``(similarities (Q, k), indices (Q, k))``, most similar first.
    """
    if use_faiss:
        if index is None:
            index = faiss_flat_index(memory)
        sims, idx = index.search(query.detach().to("cpu", torch.float32).contiguous().numpy(), k)  # type: ignore[attr-defined]
        return torch.from_numpy(sims).to(query.device), torch.from_numpy(idx).to(query.device, torch.int64)
    best_sim: Tensor | None = None
    best_idx: Tensor | None = None
    for start in range(0, memory.shape[0], memory_chunk_size):
        block = query @ memory[start : start + memory_chunk_size].T  # (Q, m)
        sim, idx = block.topk(min(k, block.shape[1]), dim=1)
        idx = idx + start
        if best_sim is not None and best_idx is not None:
            merged = torch.cat([best_sim, sim], dim=1)
            sim, order = merged.topk(min(k, merged.shape[1]), dim=1)
            idx = torch.cat([best_idx, idx], dim=1).gather(1, order)
        best_sim, best_idx = sim, idx
    assert best_sim is not None and best_idx is not None
    return best_sim, best_idx


def transfer_labels(
    memory: Tensor,
    memory_labels: Tensor,
    query: Tensor,
    *,
    k: int,
    temperature: float,
    memory_chunk_size: int = 65_536,
    use_faiss: bool = False,
    index: object | None = None,
) -> Tensor:
    """Soft labels of query patches from their ``k`` nearest memory patches.

    Args:
        memory: ``(M, D)`` L2-normalised memory features.
        memory_labels: ``(M, C)`` soft labels.
        query: ``(Q, D)`` query features (normalised here; the ranking does not depend on it).
        k: Neighbours.
        temperature: Softmax temperature over cosine similarities.
        memory_chunk_size: Memory rows per similarity block (torch path).
        use_faiss: Search with faiss instead of torch.
        index: A prebuilt :func:`faiss_flat_index` of ``memory`` (faiss path).

    Returns:
        ``(Q, C)`` transferred label distributions.
    """
    query = F.normalize(query.to(memory.dtype), dim=1)
    sims, idx = knn_search(memory, query, k, memory_chunk_size=memory_chunk_size, use_faiss=use_faiss, index=index)
    weights = torch.softmax(sims / temperature, dim=1)  # (Q, k)
    return torch.einsum("qk,qkc->qc", weights, memory_labels[idx])


class HummingbirdEvaluator(DenseEvaluator[HummingbirdOptions]):
    """Dense nearest-neighbour retrieval mIoU (Hummingbird / open-hummingbird-eval).

    Example:
        >>> ev = HummingbirdEvaluator(HummingbirdOptions(memory_size=10_240))  # doctest: +SKIP
        >>> ev.evaluate(features=fn, train=tr, val=va, dataset_name="voc").metrics["miou"]  # doctest: +SKIP
    """

    name: ClassVar[str] = "hummingbird"
    protocol: ClassVar[str] = "hummingbird"
    protocol_version: ClassVar[int] = 2
    options_model: ClassVar[type[HummingbirdOptions]] = HummingbirdOptions

    def measure(self, inputs: EvaluationInputs) -> Measurement:
        """Build the memory from ``train``, label every ``val`` patch by retrieval, score mIoU.

        Args:
            inputs: What :meth:`evaluate` received: ``train`` is the memory source, ``val`` the scored split,
                ``device`` runs the feature calls and the search; progress stages ``memory`` (images),
                ``features/val`` (images), ``retrieval`` (batches).

        Returns:
            ``miou`` and ``pixel_accuracy`` in percent.
        """
        opts = self.options
        device, progress = inputs.device, inputs.progress
        info = paired_info(inputs)
        use_faiss = opts.search == "faiss" or (opts.search == "auto" and faiss is not None)
        if use_faiss and faiss is None:
            raise ConfigError("search='faiss' but faiss is not installed; use search='torch' or 'auto'")
        memory, memory_labels, facts = self._build_memory(inputs.features, inputs.train, info, device, progress)
        k = min(opts.num_neighbours, memory.shape[0])
        index = faiss_flat_index(memory) if use_faiss else None

        cache = self.extract(inputs, "val", info=info)
        if cache.dim != memory.shape[1]:
            raise ValueError(f"feature dims differ between train ({memory.shape[1]}) and val ({cache.dim})")
        c = info.num_classes
        cm = ConfusionMatrix(c, c, ignore_index=info.ignore_index, device=device)
        # Whole images per block, about query_chunk_size patches each.
        per_block = max(1, opts.query_chunk_size // (cache.grid_hw[0] * cache.grid_hw[1]))
        chunks = batches(len(cache.features), per_block)
        with torch.inference_mode():
            for i, idx in enumerate(chunks):
                feats = cache.features[idx].to(device, torch.float32)
                b = feats.shape[0]
                soft = transfer_labels(
                    memory,
                    memory_labels,
                    feats.reshape(-1, cache.dim),
                    k=k,
                    temperature=opts.temperature,
                    memory_chunk_size=opts.memory_chunk_size,
                    use_faiss=use_faiss,
                    index=index,
                )
                maps = soft.view(b, *cache.grid_hw, c).permute(0, 3, 1, 2)
                maps = F.interpolate(maps, size=cache.mask_hw, mode="bilinear", align_corners=False)
                cm.update(cache.masks[idx].to(device, torch.int64), maps.argmax(dim=1))
                if progress is not None:
                    progress("retrieval", i + 1, len(chunks))
        conf = cm.matrix.cpu()
        if int(conf.sum()) == 0:
            raise ValueError("the val set has no pixel outside ignore_index; nothing to score")
        if opts.matching == "hungarian":
            conf = apply_mapping(conf, hungarian_match(conf, cost="iou", unmatched_to=0))
        miou_value, _ = miou(conf, opts.absent_classes)
        settings = {
            "memory_size": opts.memory_size,
            "memory_patches": int(memory.shape[0]),
            "patches_per_image": facts["patches_per_image"],
            "train_images": facts["train_images"],
            "sampling": "class-balanced (smallest class-frequency score)",
            "sampling_noise": opts.sampling_noise,
            "memory_ignore_to": 0,
            "augmentation": "none",
            "augmentation_epochs": 1,
            "num_neighbours": k,
            "temperature": opts.temperature,
            "similarity": "cosine (memory and queries L2-normalised)",
            "search": "faiss-flat-ip" if use_faiss else "torch-exact",
            "matching": opts.matching,
            "absent_classes": opts.absent_classes,
            "num_classes": c,
            "ignore_index": info.ignore_index,
            **self.feature_settings(cache),
            "feature_dtype": opts.feature_dtype,
            "label_upsample": "bilinear",
            "image_resize": "bilinear-antialias",
            "mask_resize": "nearest",
            "seed": opts.seed,
            "val_images": len(cache.features),
        }
        metrics = {
            "miou": MetricValue(value=100.0 * miou_value),
            "pixel_accuracy": MetricValue(value=100.0 * pixel_accuracy(conf)),
        }
        return metrics, settings

    def _build_memory(
        self,
        features: FeatureFn,
        train: Dataset,
        info: DatasetInfo,
        device: torch.device | str,
        progress: ProgressFn | None,
    ) -> tuple[Tensor, Tensor, dict[str, int | None]]:
        """Stream the training set in blocks; keep the selected, L2-normalised patches and soft labels."""
        opts = self.options
        n = len(train)  # type: ignore[arg-type]
        if n == 0:
            raise ConfigError("memory: the train dataset is empty")
        generator = torch.Generator().manual_seed(opts.seed)
        keep_per_image: int | None = None if opts.memory_size is None else max(1, opts.memory_size // n)
        feats, labels = [], []
        done = 0
        for first in range(0, n, opts.memory_block_images):
            block = Subset(train, range(first, min(n, first + opts.memory_block_images)))
            cache = extract_dense(
                features,
                block,
                info=info,
                input_size=opts.input_size,
                mask_size=None,  # soft labels from the masks at input resolution, as the reference
                batch_size=opts.feature_batch_size,
                num_workers=opts.num_workers,
                device=device,
                dtype=torch.float32,
            )
            grid = cache.grid_hw
            num_patches = grid[0] * grid[1]
            for idx in batches(len(cache.features), opts.feature_batch_size):
                soft = patch_soft_labels(cache.masks[idx], grid, info.num_classes, info.ignore_index)
                x = F.normalize(cache.features[idx].reshape(len(idx), num_patches, -1), dim=2)
                if keep_per_image is not None and keep_per_image < num_patches:
                    if opts.sampling_noise == "per_batch":
                        noise = torch.rand(1, generator=generator)  # hummingbird@1: never changes the order
                    else:
                        noise = reference_sampling_noise(soft, generator)
                    chosen = select_memory_patches(soft, keep_per_image, noise)
                    x = x.gather(1, chosen[..., None].expand(-1, -1, x.shape[2]))
                    soft = soft.gather(1, chosen[..., None].expand(-1, -1, soft.shape[2]))
                feats.append(x.reshape(-1, x.shape[2]))
                labels.append(soft.reshape(-1, soft.shape[2]))
            done += len(block)
            if progress is not None:
                progress("memory", done, n)
        memory = torch.cat(feats).to(device)
        facts: dict[str, int | None] = {"patches_per_image": keep_per_image, "train_images": n}
        return memory, torch.cat(labels).to(device), facts

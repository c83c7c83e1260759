"""Options of the Hummingbird dense nearest-neighbour retrieval evaluator (torch-free)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from dssl.evaluators.common_config import DenseEvalOptions, PositiveInt


class HummingbirdOptions(DenseEvalOptions):
    """Dense k-NN label transfer from a memory bank of training patches (open-hummingbird-eval 2.0.0).

    The defaults are protocol ``hummingbird@2``: the reference's bounded-memory sampling (one uniform
    draw per patch), its ``PredsmIoU.compute()`` scoring (Hungarian matching, every class in the mean,
    absent ones 0). Published Hummingbird numbers additionally use ``input_size=512`` (DINO) or ``504``
    (DINOv2) and two augmentation epochs of RandomResizedCrop + colour jitter when building the memory,
    which this evaluator does not do (one pass over the un-augmented training images, recorded as
    ``augmentation: none``). ``hummingbird@1`` was::

        HummingbirdOptions(sampling_noise="per_batch", matching="none", absent_classes="exclude_no_gt")

    Attributes:
        memory_size: Total patches kept in the memory bank (the reference's 1024x10^2 / 10^3 / 10^4);
            every training image keeps ``memory_size // num_train_images`` patches, preferring patches of
            rare classes. ``None`` keeps every patch.
        num_neighbours: Neighbours retrieved per query patch (reference: 30).
        temperature: Softmax temperature of the label transfer over cosine similarities (reference 0.02).
        matching: ``"hungarian"`` (default, the reference's ``PredsmIoU.compute()``, which Hungarian-matches
            even class-id predictions; unmatched predictions go to class 0) or ``"none"`` (predicted class
            ids scored as they are, ``hummingbird@1``).
        absent_classes: See ``DenseEvalOptions``; default ``"zero"``: a class with neither ground truth
            nor prediction scores 0 and stays in the mean, as the reference's ``max(denominator, 1e-8)``.
        sampling_noise: How the rarity score of a memory candidate is randomised. ``"per_patch"``
            (default, the reference): each non-empty patch's score times its own uniform draw, one
            ``rand(n)`` per batch handed out to the images in order, so the kept patches are a random,
            rare-class-biased subset. ``"per_batch"`` (``hummingbird@1``): one scalar per batch, which
            never changes the order, so the kept patches are the deterministic smallest-score ones.
        memory_block_images: Training images extracted at a time while building the memory (bounds the
            memory of the temporary full-resolution masks).
        query_chunk_size: Query patches per search block.
        memory_chunk_size: Memory patches per search block (torch path).
        search: ``"auto"`` uses faiss when importable, else exact torch search; ``"torch"``/``"faiss"`` force.
        seed: Seeds the sampling noise.
    """

    memory_size: PositiveInt | None = 102_400
    num_neighbours: PositiveInt = 30
    temperature: Annotated[float, Field(gt=0)] = 0.02
    matching: Literal["none", "hungarian"] = "hungarian"
    absent_classes: Literal["exclude_no_gt", "exclude_empty", "zero"] = "zero"
    sampling_noise: Literal["per_batch", "per_patch"] = "per_patch"
    memory_block_images: PositiveInt = 256
    query_chunk_size: PositiveInt = 4096
    memory_chunk_size: PositiveInt = 65_536
    search: Literal["auto", "torch", "faiss"] = "auto"
    seed: int = 0

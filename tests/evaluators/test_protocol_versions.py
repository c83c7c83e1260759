"""Guards of the protocol contract: default settings are frozen per ``protocol@version``.

A change of a default that can move the numbers must come with a protocol version bump (in the
evaluator class *and* in registry.yaml ``protocols:``) and a new row in ``FROZEN_DEFAULTS``; editing a
row in place is the mistake this test exists to catch; the one exception is a new option whose default
reproduces the old behaviour exactly (e.g. ``select_best_epoch: False``), which joins the rows that
have it. Keys in ``NUMERICALLY_NEUTRAL`` only change
speed or memory (batching of the frozen feature calls, search chunking, data-loader workers) and are
left out.
"""

from __future__ import annotations

from typing import Any

import pytest
from dssl.catalogue import load_catalogue
from dssl.host import get_host

NUMERICALLY_NEUTRAL = frozenset(
    {
        "feature_batch_size",
        "num_workers",
        "chunk_size",
        "query_chunk_size",
        "memory_chunk_size",
        "memory_block_images",
        "chunk_images",
        "feature_store",
    }
)

_DENSE = {"absent_classes": "exclude_no_gt", "feature_dtype": "float32", "input_size": None, "mask_size": None}
_KMEANS = {
    **_DENSE,
    "init": "k-means++",
    "matching_cost": "iou",
    "max_fit_points": None,
    "max_iter": 100,
    "n_init": 5,
    "pca_dim": None,
    "seeds": [0, 1, 2],
    "standardize": False,
    "tol": 0.0001,
    # Option added after these versions; its default is the implementation every version always used.
    "kmeans_backend": "sklearn",
}
_LINEAR_SEG = {
    "batch_size": 16,
    "batchnorm": False,
    "epochs": 20,
    "lr": 0.001,
    "momentum": 0.9,
    "optimizer": "adamw",
    "schedule": "cosine",
    "seed": 0,
    "select_best_epoch": False,
    "step_epochs": 20,
    "step_gamma": 0.1,
    "weight_decay": 0.0001,
    # Option added after these versions; its default is the computation every version always did.
    "logits_chunk_images": None,
}

#: protocol@version -> every numerically relevant default of its options model. Append, never edit.
FROZEN_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear_seg@1": {**_DENSE, **_LINEAR_SEG},
    "linear_seg_neco@1": {
        **_DENSE,
        **_LINEAR_SEG,
        "absent_classes": "zero",
        "input_size": 448,
        "mask_size": 100,
        "optimizer": "sgd",
        "lr": 0.01,
        "epochs": 25,
        "schedule": "step",
        "batch_size": 128,
    },
    "kmeans_seg@1": _KMEANS,
    "overcluster@1": {
        **_KMEANS,
        "ks": [100, 300, 500],
        "match_score": "precision",
        "standardize": True,
        "pca_dim": 50,
        "init": "random",
    },
    # Same defaults; K <= C is scored with Hungarian matching instead of many-to-one.
    "overcluster@2": {
        **_KMEANS,
        "ks": [100, 300, 500],
        "match_score": "precision",
        "standardize": True,
        "pca_dim": 50,
        "init": "random",
    },
    "overcluster_neco@1": {
        **_KMEANS,
        "absent_classes": "zero",
        "input_size": 448,
        "mask_size": 100,
        "ks": ["num_classes", 500],
        "match_score": "precision",
        "standardize": True,
        "pca_dim": 50,
        "init": "random",
        "seeds": [0, 1, 2, 3, 4],
        "kmeans_backend": "faiss",  # fixed: NeCo's protocol always ran faiss k-means
    },
    "hummingbird@1": {
        **_DENSE,
        "matching": "none",
        "memory_size": 102400,
        "num_neighbours": 30,
        "sampling_noise": "per_batch",
        "search": "auto",
        "seed": 0,
        "temperature": 0.02,
    },
    # The reference's per-patch sampling noise, Hungarian scoring and absent classes counted 0.
    "hummingbird@2": {
        **_DENSE,
        "absent_classes": "zero",
        "matching": "hungarian",
        "memory_size": 102400,
        "num_neighbours": 30,
        "sampling_noise": "per_patch",
        "search": "auto",
        "seed": 0,
        "temperature": 0.02,
    },
    "knn@1": {"input_size": None, "ks": [10, 20, 100, 200], "temperature": 0.07},
    "linear_cls@1": {
        "batch_size": 256,
        "epochs": 100,
        "input_size": None,
        "lrs": [0.001, 0.01, 0.1, 1.0],
        "momentum": 0.9,
        "seed": 0,
        "weight_decay": 0.0,
    },
    "concentration@1": {**_DENSE, "min_purity": 0.5, "rank_patches": 20000, "seed": 0},
    "dse@1": {
        **_DENSE,
        "global_clusters": 24,
        "group_size": 8,
        "kmeans_iters": 20,
        "local_clusters": 3,
        "max_images": 512,
        "normalize": True,
        "seed": 0,
    },
}
# dse@2: same defaults, reference computation (shuffled patches in M_dim, intra-batch spread pooled over groups).
FROZEN_DEFAULTS["dse@2"] = FROZEN_DEFAULTS["dse@1"]


def _builtin_evaluators() -> list[Any]:
    host = get_host()
    return [e for e in host.registry.entries("evaluator") if e.distribution == "dssl-bench"]


def _ids() -> list[str]:
    return [e.name for e in _builtin_evaluators()]


@pytest.mark.parametrize("name", _ids())
def test_defaults_are_frozen_per_protocol_version(name: str) -> None:
    entry = get_host().get("evaluator", name)
    cls = entry.load()
    key = f"{cls.protocol}@{cls.protocol_version}"
    assert key in FROZEN_DEFAULTS, f"{name}: no frozen defaults for {key}; add a row (and a registry.yaml protocol)"
    defaults = entry.options_model()().model_dump(mode="json")
    relevant = {k: v for k, v in defaults.items() if k not in NUMERICALLY_NEUTRAL}
    assert relevant == FROZEN_DEFAULTS[key], (
        f"{name}: default options differ from the frozen ones of {key}; "
        "bump protocol_version (class and registry.yaml) and add a new FROZEN_DEFAULTS row"
    )


@pytest.mark.parametrize("name", _ids())
def test_registry_yaml_versions_match_classes(name: str) -> None:
    entry = get_host().get("evaluator", name)
    cls = entry.load()
    protocols = load_catalogue().protocols
    assert entry.metadata.get("protocol") == cls.protocol
    assert cls.protocol in protocols, f"registry.yaml protocols: has no entry for {cls.protocol!r}"
    assert protocols[cls.protocol].version == cls.protocol_version


def test_every_frozen_row_belongs_to_a_registered_protocol() -> None:
    current = set()
    for entry in _builtin_evaluators():
        cls = entry.load()
        current.add(f"{cls.protocol}@{cls.protocol_version}")
    # Older versions may stay in the table (history); every current version must be there.
    assert current <= set(FROZEN_DEFAULTS)


@pytest.mark.parametrize("name", _ids())
def test_registry_states_each_protocols_sources_and_absent_class_convention(name: str) -> None:
    entry = get_host().get("evaluator", name)
    cls = entry.load()
    protocol = load_catalogue().protocols[cls.protocol]
    # Papers and repositories, not a document outside the project; and what the numbers compare with.
    assert protocol.reference and "methods.md" not in protocol.reference
    assert protocol.reproduces
    assert all(v < protocol.version for v in protocol.history)
    assert set(protocol.history) == set(range(1, protocol.version)), "say what every earlier version computed"
    defaults = entry.options_model()()
    if "absent_classes" in type(defaults).model_fields and not getattr(cls, "diagnostic", False):
        # The mean-IoU convention the registry states is the one the protocol's defaults follow.
        assert protocol.absent_classes == defaults.absent_classes
    else:
        assert protocol.absent_classes is None

"""The core's own components, registered through the same hooks and entry point as any plugin.

This module is the ``builtin`` entry point of the ``dssl-bench`` distribution; it imports nothing
heavy: every entry is a lazy ``"module:attr"`` string.
"""

from __future__ import annotations

from dssl import hookimpl
from dssl.registry import KindRegistry

dssl_plugin_api = ">=1.1,<2"


@hookimpl
def dssl_register_backbones(registry: KindRegistry) -> None:
    from dssl.catalogue import load_catalogue

    for alias, spec in load_catalogue().backbones.items():
        registry.add(
            alias,
            "dssl.backbones.vit:build_vit",
            summary=spec.summary,
            options="dssl.backbones.vit_config:ViTOptions",
            timm_name=spec.timm_name,
            timm_args=dict(spec.timm_args),
        )
    registry.add(
        "timm",
        "dssl.backbones.vit:build_vit",
        summary="Any timm VisionTransformer by its timm name (--backbone vit_large_patch16_224)",
        options="dssl.backbones.vit_config:ViTOptions",
        test_name="vit_tiny_patch16_224",
    )


@hookimpl
def dssl_register_objectives(registry: KindRegistry) -> None:
    registry.add(
        "dino",
        "dssl.objectives.dino:DINOObjective",
        summary="DINO self-distillation baseline (faithful to facebookresearch/dino main_dino.py)",
        paper="arXiv 2104.14294",
        options="dssl.objectives.dino_config:DINOOptions",
        default_augmentation="multicrop",
        test_options={"out_dim": 128, "hidden_dim": 64, "bottleneck_dim": 32},
    )


@hookimpl
def dssl_register_augmentations(registry: KindRegistry) -> None:
    registry.add(
        "multicrop",
        "dssl.augment.multicrop:MultiCrop",
        summary="DINO multi-crop (global + local crops) returning every view with its geometry",
        paper="arXiv 2104.14294",
        options="dssl.augment.multicrop_config:MultiCropOptions",
        test_options={"global_size": 32, "local_size": 16, "n_local": 2},
    )


@hookimpl
def dssl_register_datasets(registry: KindRegistry) -> None:
    # Generated datasets: the CPU track's data, then variants measured against it (never ranked with it).
    generated = {
        "embedded": "Procedural scenes with per-pixel labels, generated on the fly (no download)",
        "embedded_natural": "The embedded scenes with class-typical, variable colours (not the CPU track's data)",
        "embedded_coherent": "The embedded scenes, every object of a scene of one class (a data screen, not the CPU "
        "track's data)",
        "embedded_coherent_mono": "embedded_coherent with one colour pair per scene (a data screen, not the CPU "
        "track's data)",
    }
    for name, summary in generated.items():
        registry.add(
            name,
            f"dssl.data.embedded:build_{name}",
            summary=summary,
            options="dssl.data.embedded_config:EmbeddedOptions",
            test_options={"size": 32, "num_train": 8, "num_val": 4},
        )
    # Datasets read from --data-root: `requires_data` marks them, `test_fixture` names the writer of a tiny
    # copy in the real format (dssl.data.fixtures) that tests and the conformance suite build them on.
    files = {
        "voc2012": ("voc:build_voc2012", "voc_config:VOCOptions", "Pascal VOC 2012 segmentation, 21 classes, "
                    "trainaug/val (VOCdevkit/VOC2012)"),
        "coco_stuff27": ("coco:build_coco_stuff27", "coco_config:CocoOptions", "COCO-Stuff-27: STEGO's curated 27 "
                         "coarse classes (12 thing + 15 stuff) from COCO 2017 JSON or label maps"),
        "coco_things": ("coco:build_coco_things", "coco_config:CocoOptions", "COCO-Things: 12 thing "
                        "supercategories from COCO 2017 instances, stuff ignored"),
        "ade20k": ("ade20k:build_ade20k", "ade20k_config:ADE20KOptions", "ADE20K SceneParsing, 150 classes + 0 = "
                   "other (ignored; reduce_zero_label for mmseg)"),
        "cityscapes": ("cityscapes:build_cityscapes", "cityscapes_config:CityscapesOptions", "Cityscapes gtFine, "
                       "19 train ids, 255 ignored"),
        "imagefolder": ("imagefolder:build_imagefolder", "imagefolder_config:ImageFolderOptions", "Image "
                        "classification from <root>/<split>/<class>/*.jpg (labels, no masks)"),
        "image_mask_folder": ("image_mask_folder:build_image_mask_folder",
                              "image_mask_folder_config:ImageMaskFolderOptions",
                              "Any dense dataset as <root>/<split>/images + <root>/<split>/masks PNGs"),
    }  # fmt: skip
    for name, (target, options, summary) in files.items():
        test_options: dict[str, object] = {"size": 32}
        if name == "image_mask_folder":
            test_options["num_classes"] = 3
        registry.add(
            name,
            f"dssl.data.{target}",
            summary=summary,
            options=f"dssl.data.{options}",
            requires_data=True,
            test_fixture=f"dssl.data.fixtures:write_{name}",
            test_options=test_options,
        )


@hookimpl
def dssl_register_evaluators(registry: KindRegistry) -> None:
    registry.add(
        "linear_seg",
        "dssl.evaluators.linear_seg:LinearSegEvaluator",
        summary="Linear 1x1 probe on frozen patch tokens, mIoU at mask resolution",
        options="dssl.evaluators.linear_seg_config:LinearSegOptions",
        protocol="linear_seg",
        test_options={"epochs": 2},
    )
    registry.add(
        "kmeans_seg",
        "dssl.evaluators.kmeans_seg:KMeansSegEvaluator",
        summary="K-means (K = classes) + Hungarian matching mIoU, mean ± std over seeds",
        options="dssl.evaluators.kmeans_seg_config:KMeansSegOptions",
        protocol="kmeans_seg",
        test_options={"seeds": [0], "n_init": 1},
    )
    registry.add(
        "linear_seg_neco",
        "dssl.evaluators.linear_seg_neco:LinearSegNecoEvaluator",
        summary="NeCo/Leopart linear probe: 448 px input, logits and masks at 100x100, SGD 25 epochs",
        options="dssl.evaluators.linear_seg_neco_config:LinearSegNecoOptions",
        protocol="linear_seg_neco",
        test_options={"epochs": 2, "input_size": 32, "mask_size": 16},
    )
    registry.add(
        "overcluster",
        "dssl.evaluators.overcluster:OverclusterEvaluator",
        summary="K-means overclustering (K in a list) + many-to-one precision matching mIoU over seeds",
        options="dssl.evaluators.overcluster_config:OverclusterOptions",
        protocol="overcluster",
        test_options={"ks": [8], "seeds": [0], "n_init": 1},
    )
    registry.add(
        "overcluster_neco",
        "dssl.evaluators.overcluster_neco:OverclusterNecoEvaluator",
        summary="NeCo's eval_overcluster: 448 px, scaler + faiss PCA 50 + faiss k-means, K = C and 500, 5 seeds",
        options="dssl.evaluators.overcluster_neco_config:OverclusterNecoOptions",
        protocol="overcluster_neco",
        requires_module="faiss",  # optional extra: pip install dssl-bench[faiss]
        test_options={"ks": ["num_classes", 8], "seeds": [0], "n_init": 1, "input_size": 32, "mask_size": 16},
    )
    registry.add(
        "hummingbird",
        "dssl.evaluators.hummingbird:HummingbirdEvaluator",
        summary="Hummingbird dense k-NN label transfer from a class-balanced memory of train patches, mIoU",
        options="dssl.evaluators.hummingbird_config:HummingbirdOptions",
        protocol="hummingbird",
        test_options={"memory_size": 64},
    )
    registry.add(
        "knn",
        "dssl.evaluators.knn:KNNEvaluator",
        summary="Weighted k-NN (exp(cos/0.07)) top-1 on L2-normalised image features, several k",
        options="dssl.evaluators.knn_config:KNNOptions",
        protocol="knn",
        test_options={"ks": [1, 3]},
    )
    registry.add(
        "linear_cls",
        "dssl.evaluators.linear_cls:LinearClsEvaluator",
        summary="Linear classifiers on cached image features, all learning rates trained in one pass",
        options="dssl.evaluators.linear_cls_config:LinearClsOptions",
        protocol="linear_cls",
        test_options={"epochs": 2},
    )
    registry.add(
        "concentration",
        "dssl.evaluators.concentration:ConcentrationEvaluator",
        summary="Diagnostic: intra- vs inter-class patch cosine similarity, their gap, effective rank",
        options="dssl.evaluators.diagnostics_config:ConcentrationOptions",
        protocol="concentration",
        diagnostic=True,
    )
    registry.add(
        "dse",
        "dssl.evaluators.dse:DSEEvaluator",
        summary="Diagnostic: DSE dense structure estimator (inter/intra cluster spread, effective dimensionality)",
        options="dssl.evaluators.diagnostics_config:DSEOptions",
        protocol="dse",
        diagnostic=True,
        test_options={"global_clusters": 6},
    )

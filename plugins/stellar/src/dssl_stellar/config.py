"""Options of the STELLAR objective and its views (torch-free, so configs validate without torch).

Defaults are those of the official code, ``microsoft/STELLAR`` (commit cc58760): ``configs/stellar.yaml``
where it sets a value, else the ``STELLARModel`` / ``OnlineClustering`` / ``MatcherSinkhorn`` constructor
defaults in ``src/models/stellar_model.py``, else constants hard-coded there. Each description says which.
"""

from __future__ import annotations

from typing import Literal

from dssl.plugin import FloatPair, MultiCropOptions
from pydantic import BaseModel, ConfigDict, Field, model_validator


class StellarViewsOptions(MultiCropOptions):
    """STELLAR's views (``src/datasets/imagenet_dataset.py`` + ``random_color_blur`` in the model).

    Global view 0 rendered without photometric changes (``return_clean``) is the official ``image``: the
    full view whose low-rank map is decoded and whose sparse tokens give the clustering targets.
    """

    n_global: int = Field(8, ge=1, description="Global crops per image (imagenet_dataset.py: 8).")
    n_local: int = Field(8, ge=0, description="Local crops per image (imagenet_dataset.py: 8).")
    global_scale: FloatPair = Field((0.36, 1.0), description="Global RandomResizedCrop scale (imagenet_dataset.py).")
    local_scale: FloatPair = Field((0.06, 0.36), description="Local RandomResizedCrop scale (imagenet_dataset.py).")
    interpolation: Literal["bilinear", "bicubic"] = Field(
        "bicubic", description="Resize mode (kornia RandomResizedCrop resample='bicubic')."
    )
    blur_p_global: tuple[float, ...] = Field(
        (0.5,), description="Blur probability of every global view (random_color_blur: p 0.5)."
    )
    blur_p_local: float = Field(0.5, ge=0.0, le=1.0, description="Blur probability of local views (p 0.5).")
    solarize_p_global: tuple[float, ...] = Field((0.0,), description="No solarisation in STELLAR.")
    return_clean: bool = Field(
        True, description="Clean renderings; clean global view 0 is the reconstruction / target image."
    )


class StellarOptions(BaseModel):
    """STELLAR objective options (see the module docstring for where the defaults come from)."""

    model_config = ConfigDict(extra="forbid")

    # --- factorisation
    num_sparse_tokens: int = Field(16, ge=2, description="r sparse tokens (stellar.yaml num_sparse_tokens: 16).")
    spatial_temp: float | None = Field(
        0.06,
        gt=0,
        description="Localisation temperature on cosine similarities (stellar.yaml 0.06); null: dot products "
        "divided by sqrt(D) (the code's spatial_temp=None branch).",
    )
    eval_features: Literal["dense", "lowrank"] = Field(
        "dense",
        description="What eval_backbone().features returns: the encoder's patch tokens ('dense', the official "
        "segmentation probe's default feature_key) or the low-rank map L·S ('lowrank').",
    )
    # --- reconstruction branch
    reconstruction: Literal["pixels", "vq", "none"] = Field(
        "pixels",
        description="Decoder target: 'pixels' = MSE on the [0,1] image (the code's vq_model=None path); 'vq' = "
        "cross-entropy on codes of a frozen local tokenizer (stellar.yaml uses MaskGIT-VQGAN f16, not shipped); "
        "'none' = do_recon False.",
    )
    rec_coeff: float | None = Field(
        None, ge=0, description="Reconstruction weight; null = official default (10 for MSE, 0.05 for VQ-CE)."
    )
    vq_tokenizer: str | None = Field(
        None,
        description="Path of a TorchScript tokenizer mapping [0,1] images (B,3,H,W) to code ids (B, h*w) on the "
        "patch grid; required by reconstruction='vq'. None ships with dssl; nothing is downloaded.",
    )
    vq_codebook_size: int = Field(1024, gt=1, description="Codebook size of the tokenizer (MaskGIT VQGAN: 1024).")
    decoder_dim: int = Field(512, gt=0, description="Decoder width (decoder ViTConfig hidden_size 512).")
    decoder_depth: int = Field(6, ge=1, description="Decoder blocks (stellar.yaml num_decoder_layers: 6).")
    decoder_heads: int = Field(8, ge=1, description="Decoder heads (decoder ViTConfig num_attention_heads 8).")
    decoder_mlp_ratio: float = Field(4.0, gt=0, description="Decoder MLP ratio (intermediate_size 2048 / 512).")
    # --- semantic branch: online clustering
    num_clusters: int = Field(16384, ge=2, description="Prototypes (stellar.yaml num_clusters: 16384).")
    predictor_layers: int = Field(2, ge=1, description="Predictor MLP linear layers (stellar.yaml: 2).")
    predictor_hidden_dim: int = Field(2048, gt=0, description="Predictor hidden width (MLPBlock mlp_dim=2048).")
    prototype_dim: int = Field(256, gt=0, description="Predictor output / prototype width (stellar.yaml: 256).")
    cls_clustering: bool = Field(True, description="[CLS] clustering head and losses (stellar.yaml do_cls: True).")
    pred_temp: float = Field(0.12, gt=0, description="Prediction temperature (logits_temp default 0.12).")
    sk_temp: float = Field(0.06, gt=0, description="Sinkhorn target temperature (sk_temp default 0.06).")
    sk_iterations: int = Field(3, ge=1, description="Sinkhorn-Knopp iterations (n_sk_iter default 3).")
    sk_scale: float = Field(1.0, gt=0, le=1.0, description="Column-sum exponent (sk_scale default 1.0).")
    koleo_weight: float = Field(0.1, ge=0, description="KoLeo weight on each image's sparse tokens (code: 0.1).")
    koleo_distance_scale: float = Field(0.5, gt=0, description="Factor on KoLeo distances (KoLeoLoss: 0.5).")
    reg_coeff: float = Field(1.0, ge=0, description="Weight of the sum of all non-reconstruction losses (1.0).")
    # --- masked views and OT token matching
    num_masks: int = Field(8, ge=0, description="Masked global views per image (stellar.yaml num_masks: 8).")
    masking_ratio: float = Field(0.8, ge=0.0, lt=1.0, description="Masked patch ratio (stellar.yaml: 0.8).")
    focal_mode: Literal["gaussian", "block", "none"] = Field(
        "gaussian", description="Bias of the kept patches (stellar.yaml focal_mode: gaussian)."
    )
    focal_p: float = Field(0.5, ge=0.0, le=1.0, description="Probability of the focal bias per view (code: 0.5).")
    focal_sigma: FloatPair = Field(
        (0.1, 0.5), description="Gaussian focal sigma range in grid sides (add_gaussian_bias: (0.1, 0.5))."
    )
    mask_mode: Literal["drop", "token"] = Field(
        "drop",
        description="'drop': only visible patches enter the encoder (the code, MAE-style); 'token': masked "
        "patches replaced by the backbone's learnable mask token.",
    )
    mask_seed: int = Field(0, ge=0, description="Seed of the mask generator (masks = f(seed, step, rank)).")
    token_matching: bool = Field(
        True, description="Match masked-view sparse tokens to the full view's by OT (hungarian_match: True)."
    )
    ot_epsilon: float = Field(0.1, gt=0, description="OT entropic regularisation (MatcherSinkhorn epsilon 0.1).")
    ot_iterations: int = Field(5, ge=1, description="OT dual iterations (MatcherSinkhorn n_iters 5).")
    num_local_crops: int = Field(8, ge=0, description="Local crops whose [CLS] is trained (num_local_crops: 8).")
    # --- optional EMA teacher
    momentum_teacher: bool = Field(False, description="EMA teacher (stellar.yaml momentum_teacher: False).")
    teacher_momentum: float = Field(0.996, ge=0, le=1, description="Constant EMA momentum (stellar.yaml 0.996).")

    @model_validator(mode="after")
    def _vq_needs_tokenizer(self) -> StellarOptions:
        if self.reconstruction == "vq" and not self.vq_tokenizer:
            raise ValueError(
                "reconstruction='vq' needs vq_tokenizer: a local TorchScript tokenizer file (none ships with "
                "dssl and nothing is downloaded); use reconstruction='pixels' (the default) otherwise"
            )
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim {self.decoder_dim} must be divisible by decoder_heads {self.decoder_heads}")
        if self.decoder_dim % 2:
            raise ValueError("decoder_dim must be even (random Fourier features come as sin/cos pairs)")
        return self

    def reconstruction_weight(self) -> float:
        """``rec_coeff`` or the official default of the chosen target (STELLAR_Loss: 10 MSE, 0.05 VQ-CE)."""
        if self.rec_coeff is not None:
            return self.rec_coeff
        return 0.05 if self.reconstruction == "vq" else 10.0

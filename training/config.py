"""Training configs: TOML files loaded into dataclasses; unknown or mistyped keys are errors."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vrfer.core.config import from_dict, read_toml
from vrfer.core.errors import ConfigError
from vrfer.core.preprocess import PREPROCESS_VERSION



@dataclass
class AugmentConfig:
    rotate: float = 10.0  # degrees, uniform +-
    scale: float = 0.1  # uniform 1 +- scale
    shift: float = 3.0  # canonical pixels, uniform +-
    flip: bool = True
    camera_shift: float = 0.0  # probability of a random mouth camera (training/adapt_bench.py), student only
    photometric: float = 0.0  # probability of a random exposure/contrast/gamma/noise change (webcams)
    visor: float = 0.0  # probability of a headset edge reaching below the midline (student only)
    headset: float = 0.0  # probability of a drawn headset (shell, straps, glare, hand or mic), student only
    occluder: float = 0.0  # probability of a random thing over the upper face (any outline, shade, rim, strap, hand), student only
    webcam: float = 0.0  # probability of a colour webcam's view at 80-300 px (training/headset/webcam.py), student only
    webcam_tilt: float = 0.0  # share of those views (and of the Valid webcam view) seen from an angle (webcam.draw_tilt)


@dataclass
class KDConfig:
    teacher: str = ""  # checkpoint path of a full-face teacher; empty = no distillation
    method: str = "none"  # none | classic | triplet
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the distillation term; 1 - alpha goes to cross-entropy
    margin: float = 0.3  # triplet margin
    triplet_weight: float = 1.0
    cache: bool = True  # teacher outputs computed once per Train face and its mirror (training/teacher_cache.py)


@dataclass
class ShapesConfig:
    """The mouth-shape head (training/mouth_targets.py): continuous lower-face shapes from the mesh."""

    targets: str = ""  # a mouth targets .npz; "auto" = the newest under <out>/../mouth_cache, built if absent; "" = no head
    weight: float = 1.0  # weight of the shape loss beside the class loss
    loss: str = "smooth_l1"  # smooth_l1 | mse, over the shapes the mesh measured (NaN targets masked)


@dataclass
class TrainConfig:
    name: str = "student"
    model: str = "tinyres"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = ""  # FER+ root; empty = core.paths.ferplus_dir()
    dataset: str = "ferplus"
    label_mode: str = "majority"
    size: int = 48
    occlusion: str = "vr"  # none | vr
    region: str = "lower"  # full | lower
    preprocess_version: int = PREPROCESS_VERSION  # core.preprocess normalisation; checkpoints without it are 1
    upsample: int = 0  # >0: resize inputs to this many px on the device (paper's 224 px)
    epochs: int = 40
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"  # sgd (Nesterov) | adamw
    trunk_lr_scale: float = 1.0  # lr of every parameter outside the head, relative to lr (fine-tuning)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    ema_decay: float = 0.999
    init: str = ""  # start from this checkpoint's best weights (fine-tuning); not a resume
    select: str = "crops"  # what best.pt is chosen on: Valid "crops", or "crops+webcam" (their mean with the webcam view)
    train_subset: int = 0  # >0: use only this many training images (tests, smoke runs)
    eval_subset: int = 0
    seed: int = 0
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    out: str = "runs/student"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    shapes: ShapesConfig = field(default_factory=ShapesConfig)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        path = Path(path)
        raw = read_toml(path)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return from_dict(cls, raw, str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def checkpoint_config(raw: dict[str, Any], origin: str) -> TrainConfig:
    """The TrainConfig a checkpoint saved. Checkpoints from before the field existed used version 1."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: the checkpoint's config is a {type(raw).__name__}, not a table")
    return from_dict(TrainConfig, {"preprocess_version": 1, **raw}, origin)

"""Model checkpoints that remember the model config and the feature map they were trained on."""

from __future__ import annotations

from pathlib import Path

import torch

from ctrdistill.data.schema import FeatureMap
from ctrdistill.errors import CtrDistillError
from ctrdistill.files import RETRAIN, load_torch, reading
from ctrdistill.models.base import CTRModel
from ctrdistill.models.registry import build_model
from ctrdistill.rundir import RunDirectory


def save_checkpoint(path: Path, model: CTRModel, feature_map: FeatureMap) -> None:
    torch.save({"model_config": model.config.model_dump(),
                "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "feature_map": feature_map.model_dump(),
                "fingerprint": feature_map.fingerprint()}, path)


def load_checkpoint(path: Path, feature_map: FeatureMap | None = None) -> tuple[CTRModel,
                                                                                 FeatureMap]:
    """Rebuild the model; refuse a feature map that differs from the one it was trained on."""
    path = Path(path)
    if path.is_dir():
        path = RunDirectory(path).checkpoint()
    if not path.is_file():
        raise CtrDistillError(f"checkpoint not found: {path}")
    state = load_torch(path, RETRAIN)
    with reading(path, RETRAIN):  # a checkpoint of something else lacks our keys
        trained_on = FeatureMap.model_validate(state["feature_map"])
        model = build_model(state["model_config"], trained_on)
        model.load_state_dict(state["state_dict"])
        fingerprint = state["fingerprint"]
    if feature_map is not None and feature_map.fingerprint() != fingerprint:
        raise CtrDistillError(
            f"{path}: the prepared dataset's feature map does not match the checkpoint "
            f"({feature_map.difference(trained_on)}); use the data the model was trained on, "
            "or retrain")
    return model.eval(), trained_on

"""`ctrdistill mutual` and `ctrdistill kdef`: train a group of peers or a KDEF ensemble as one
run, then save a results table (the served ensemble and every peer/sub-network) beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import yaml
from pydantic import Field, model_validator

from ctrdistill.analysis.report import print_table, result_row, save_table
from ctrdistill.config import StrictConfig
from ctrdistill.data.dataset import PreparedData
from ctrdistill.models.registry import build_model
from ctrdistill.strategies.base import Strategy
from ctrdistill.strategies.kdef import KDEFModel, KDEFStrategy, default_backbone
from ctrdistill.strategies.mutual import MutualStrategy, load_peers
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.run import ModelSpec, RunResult, execute


class _EnsembleConfig(StrictConfig):
    name: str
    data: Path
    output_dir: Path = Path("runs")
    train: TrainConfig = Field(default_factory=TrainConfig)
    overwrite: bool = False


class MutualConfig(_EnsembleConfig):
    """Peers trained from scratch (`peers`) and/or fine-tuned from run directories (`peer_runs`)."""

    peers: list[ModelSpec] = Field(default_factory=list)
    peer_runs: list[Path] = Field(default_factory=list)
    distance: Literal["mse_probs", "kl", "mse_logits"] = "mse_probs"
    weight: float = Field(1.0, ge=0)
    warmup_steps: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> MutualConfig:
        if len(self.peers) + len(self.peer_runs) < 2:
            raise ValueError("mutual learning needs at least two peers (peers + peer_runs)")
        return self


class KDEFConfig(_EnsembleConfig):
    backbone: ModelSpec = Field(default_factory=default_backbone,
                                description="every sub-network's model (default: DNN)")
    num_subnetworks: int = Field(4, ge=1)
    mode: Literal["kdef", "naive", "independent"] = Field(
        "kdef", description="kdef and naive share one embedding; independent sub-networks own "
        "theirs")


def _run(config: _EnsembleConfig, strategy: Strategy, data: PreparedData, outputs: list[str],
         log=print) -> RunResult:
    result = execute(config.name, strategy, data, config.train, config.output_dir / config.name,
                     config.model_dump(mode="json"), overwrite=config.overwrite, log=log)
    rows = [result_row(f"{config.name} (served)", result.metrics)]
    rows += [result_row(f"{config.name}/{o}", result.metrics, output=o) for o in outputs]
    save_table(rows, result.path)  # curves.png (from execute) already draws every output
    print_table(rows, f"{config.name}: test split")
    result.extra["rows"] = rows
    return result


def _trained_on(run_dir: Path) -> Path | None:
    """The prepared data a finished run trained on, as its saved config names it."""
    config_file = run_dir / "config.yaml"
    data = yaml.safe_load(config_file.read_text()).get("data") if config_file.is_file() else None
    return Path(data).resolve() if data else None


def _warn_seen_rows(config: MutualConfig, log) -> None:
    """Fine-tuning on the rows a peer already trained on overfits: a second pass over seen rows
    loses about 1% AUC (the one-epoch phenomenon, BENCHMARKS.md §6.3), fresh rows do not."""
    seen = [run.name for run in config.peer_runs if _trained_on(run) == config.data.resolve()]
    if seen:
        log(f"warning: peer run(s) {', '.join(seen)} already trained on the training rows of "
            f"{config.data}; a second pass over seen rows overfits CTR models (the one-epoch "
            "phenomenon, see BENCHMARKS.md §6.3): fine-tune on new rows")


def mutual(config: MutualConfig, log=print) -> RunResult:
    _warn_seen_rows(config, log)
    data = PreparedData(config.data)
    torch.manual_seed(config.train.seed)
    fm = data.feature_map
    sparse = config.train.sparse_embedding
    peers = [build_model(spec, fm, sparse=sparse) for spec in config.peers]
    peers += load_peers(config.peer_runs, fm)
    strategy = MutualStrategy(peers, config.distance, config.weight, config.warmup_steps,
                              feature_map=fm)
    return _run(config, strategy, data, [f"peer{k}" for k in range(len(peers))], log)


def kdef(config: KDEFConfig, log=print) -> RunResult:
    data = PreparedData(config.data)
    torch.manual_seed(config.train.seed)
    model = KDEFModel.build(config.backbone, data.feature_map, config.num_subnetworks,
                            sparse=config.train.sparse_embedding,
                            shared_embedding=config.mode != "independent")
    strategy = KDEFStrategy(model, config.mode)
    return _run(config, strategy, data, [f"sub{k}" for k in range(config.num_subnetworks)], log)

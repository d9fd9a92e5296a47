"""The GPU path without a GPU: models, strategies and batches on PyTorch's `meta` device, where
an op that mixes in a tensor made on the CPU fails as it would on CUDA, and reading a value to
the host (`.cpu()`, `.item()`, `float()`: a sync per step on a GPU) fails too.

Training steps must run to the end on `meta`. Labelling, scoring and evaluation must run every
batch there and fail only at their one copy of the results to the host ("Cannot copy out of
meta tensor"): a tensor on the wrong device fails earlier, with another error."""

from __future__ import annotations

import pytest
import torch

from conftest import make_batch, make_feature_map
from ctrdistill.data.batch import TEACHER_LOGITS
from ctrdistill.data.dataset import ColumnData
from ctrdistill.labels.store import teacher_logits
from ctrdistill.models import build_model, model_names
from ctrdistill.models.ensembles import KDEFModel
from ctrdistill.strategies import PlainStrategy
from ctrdistill.strategies.factory import KDOptions, kd_strategy
from ctrdistill.strategies.kdef import KDEFStrategy
from ctrdistill.strategies.mutual import MutualStrategy
from ctrdistill.training import trainer as trainer_module
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.inference import score
from ctrdistill.training.trainer import Trainer

META = torch.device("meta")
HOST_COPY = "Cannot copy out of meta tensor"
FEATURE_MAP = make_feature_map()


@pytest.fixture(autouse=True)
def on_meta(monkeypatch):
    """Trainers resolve every device to `meta`."""
    monkeypatch.setattr(trainer_module, "resolve_device", lambda spec="auto": META)


def _trainer(strategy, **train) -> Trainer:
    return Trainer(strategy, TrainConfig(progress=False, **train))


def _step(strategy, batch, **train) -> None:
    trainer = _trainer(strategy, **train)
    assert all(p.device == META for p in trainer.strategy.parameters())
    for step in range(2):  # the second step runs with the optimizers' state
        trainer.strategy.start_step(step, 0)
        terms = trainer.train_step(batch)
    assert terms["loss"].device == META


def _rows(n: int = 32) -> ColumnData:
    batch = make_batch(FEATURE_MAP, n)
    return ColumnData(FEATURE_MAP, batch.cat, batch.num, batch.seq, batch.label, batch.row_id)


def _model(name: str = "dnn", **config):
    torch.manual_seed(0)
    return build_model({"name": name} | config, FEATURE_MAP)


@pytest.mark.parametrize("name", model_names())
def test_every_model_trains_and_scores_on_the_device(name):
    _step(PlainStrategy(_model(name)), make_batch(FEATURE_MAP, 16))
    with pytest.raises(NotImplementedError, match=HOST_COPY):
        score(_model(name).to(META), _rows())


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "adagrad"])
@pytest.mark.parametrize("sparse", [False, True])
def test_every_optimizer_steps_on_the_device(optimizer, sparse):
    _step(PlainStrategy(_model()), make_batch(FEATURE_MAP, 16), optimizer=optimizer,
          sparse_embedding=sparse)


def _distill_batch(n: int = 16, hidden: int = 0):
    batch = make_batch(FEATURE_MAP, n)
    batch.teacher_logits = torch.randn(n, 2)
    if hidden:
        batch.teacher_hidden = torch.randn(n, hidden)
    return batch


KD = [
    {"kind": "direct"},
    {"kind": "aux"},
    {"kind": "direct", "ensemble": "weights"},
    {"kind": "direct", "ensemble": "gate", "gate_inputs": ["embedding", "logits"]},
    {"kind": "direct", "ensemble": "mean_probs", "distance": "kl"},
]


@pytest.mark.parametrize("options", KD, ids=lambda o: "-".join(map(str, o.values())))
def test_distillation_from_stored_logits_on_the_device(options):
    strategy = kd_strategy(KDOptions(**options), _model(), [], 2, FEATURE_MAP)
    _step(strategy, _distill_batch())


@pytest.mark.parametrize("options", [
    {"kind": "direct", "hint": 0.5},
    {"kind": "direct", "ensemble": "gate", "gate_inputs": ["embedding", "logits", "hidden"]},
    {"kind": "aux", "ensemble": "gate"},
], ids=["hint", "gate-hidden", "aux-gate"])
def test_distillation_from_live_teachers_on_the_device(options):
    teachers = [_model(), _model("deepfm")]
    strategy = kd_strategy(KDOptions(**options), _model(), teachers, 2, FEATURE_MAP)
    _step(strategy, make_batch(FEATURE_MAP, 16))


def test_stored_hidden_vectors_on_the_device():
    strategy = kd_strategy(KDOptions(hint=0.5), _model(), [], 2, FEATURE_MAP,
                           stored_hidden_dim=6)
    _step(strategy, _distill_batch(hidden=6))


def test_mutual_learning_on_the_device():
    _step(MutualStrategy([_model(), _model("fm")], "kl", warmup_steps=1),
          make_batch(FEATURE_MAP, 16))


@pytest.mark.parametrize("mode", ["kdef", "naive"])
def test_kdef_on_the_device(mode):
    model = KDEFModel.build({"name": "dnn", "embedding_dim": 4, "hidden_units": [8]},
                            FEATURE_MAP, 3)
    _step(KDEFStrategy(model, mode), make_batch(FEATURE_MAP, 16))


def test_labelling_runs_every_batch_on_the_teachers_device():
    teachers = [_model().to(META), _model("deepfm").to(META)]
    with pytest.raises(NotImplementedError, match=HOST_COPY):
        teacher_logits(teachers, _rows(), batch_size=8, hidden=True)


def test_evaluation_runs_on_the_trainers_device():
    trainer = _trainer(kd_strategy(KDOptions(), _model(), [], 2, FEATURE_MAP))
    rows = _rows()
    rows.optional[TEACHER_LOGITS] = torch.randn(len(rows), 2)
    with pytest.raises(NotImplementedError, match=HOST_COPY):
        trainer.predict(rows)

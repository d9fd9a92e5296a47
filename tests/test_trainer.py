"""The trainer's options, each against what it promises: early stopping (patience, min_delta,
mode, weighted monitors), the learning-rate plateau, gradient clipping, max_steps, embedding
L2, the SparseAdam path and the restore of the best state.

Stopping rules are checked on scripted validation scores (exact, no luck involved); the rest on
tiny synthetic data from the shared generator."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from conftest import make_batch, make_feature_map
from ctrdistill.data.dataset import ColumnData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.data.schema import PAD_ID, FeatureMap
from ctrdistill.errors import CtrDistillError
from ctrdistill.models import build_model
from ctrdistill.strategies.plain import PlainStrategy
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.trainer import FitResult, Trainer

TINY = {"name": "dnn", "embedding_dim": 4, "hidden_units": [8], "dropout": 0.0}
TRAIN_ROWS, BATCH = 320, 16  # 20 steps an epoch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def feature_map() -> FeatureMap:
    return make_feature_map()


def columns(feature_map: FeatureMap, n: int, seed: int) -> ColumnData:
    batch = make_batch(feature_map, n, seed)
    return ColumnData(feature_map, batch.cat, batch.num, batch.seq, batch.label,
                      batch.row_id)


def config(**overrides: Any) -> TrainConfig:
    return TrainConfig.model_validate({"epochs": 1, "batch_size": BATCH, "progress": False}
                                      | overrides)


def trainer_for(feature_map: FeatureMap, train_config: TrainConfig, seed: int = 0) -> Trainer:
    torch.manual_seed(seed)
    model = build_model(TINY, feature_map)
    return Trainer(PlainStrategy(model), train_config)


def scripted_fit(feature_map: FeatureMap, scores: list[dict[str, float]] | list[float],
                 **overrides: Any) -> tuple[FitResult, Trainer, list[dict]]:
    """Fit with one evaluation a step whose results follow `scores` (AUCs, or metric dicts);
    the last one repeats. Also returns the trained state seen at each evaluation."""
    trainer = trainer_for(feature_map, config(eval_every_steps=1, **overrides))
    script = [s if isinstance(s, dict) else {"auc": s} for s in scores]
    states: list[dict] = []

    def evaluate(data: ColumnData) -> dict[str, float]:
        states.append(trainer.strategy.trained_state())
        return dict(script[min(len(states), len(script)) - 1])

    trainer.evaluate = evaluate  # type: ignore[method-assign]
    train = BatchLoader(columns(feature_map, TRAIN_ROWS, seed=1), BATCH, seed=0)
    return trainer.fit(train, columns(feature_map, 64, seed=2)), trainer, states


@pytest.mark.parametrize(("patience", "evaluations"), [(0, 3), (1, 3), (2, 4), (3, 5)])
def test_patience_counts_evaluations_without_improvement_as_keras_does(
        feature_map, patience, evaluations):
    # Two improvements, then none: equalling the best (0.7 again) is no improvement.
    result, _, _ = scripted_fit(feature_map, [0.6, 0.7, 0.65, 0.7, 0.69, 0.6],
                                early_stop={"patience": patience})
    assert result.stopped_early and len(result.history) == evaluations
    assert result.best["step"] == 2


def test_an_improvement_resets_the_count(feature_map):
    result, _, _ = scripted_fit(feature_map, [0.6, 0.5, 0.61, 0.5, 0.62, 0.5, 0.5],
                                early_stop={"patience": 2})
    assert result.stopped_early and len(result.history) == 7
    assert result.best["step"] == 5


def test_min_delta_is_the_margin_an_improvement_needs(feature_map):
    aucs = [0.600, 0.605, 0.609, 0.615, 0.620]
    loose, _, _ = scripted_fit(feature_map, aucs, early_stop={"patience": 3})
    assert loose.best["step"] == 5 and len(loose.history) == 8
    # 0.605 and 0.609 are within 0.01 of 0.600; 0.615 beats it by more; 0.620 does not beat 0.615.
    strict, _, _ = scripted_fit(feature_map, aucs, early_stop={"patience": 3, "min_delta": 0.01})
    assert strict.best["step"] == 4 and len(strict.history) == 7


# Best AUC at step 2, best logloss at step 4, best AUC - logloss at step 3.
METRICS = [{"auc": 0.70, "logloss": 0.50}, {"auc": 0.74, "logloss": 0.46},
           {"auc": 0.73, "logloss": 0.43}, {"auc": 0.71, "logloss": 0.42}]


@pytest.mark.parametrize(("monitor", "mode", "best_step"), [
    ("auc", "auto", 2),
    ("auc", "min", 1),
    ("logloss", "auto", 4),
    ("logloss", "max", 1),
    ({"auc": 1, "logloss": -1}, "auto", 3),
    ({"auc": 1, "logloss": -1}, "min", 1),
], ids=str)
def test_monitor_and_mode_choose_the_best_evaluation(feature_map, monitor, mode, best_step):
    result, _, _ = scripted_fit(feature_map, METRICS,
                                early_stop={"monitor": monitor, "mode": mode, "patience": 4})
    assert result.best["step"] == best_step
    assert result.stopped_early and len(result.history) == best_step + 4


def test_auto_mode_maximises_auc_and_weights_and_minimises_losses():
    def resolved(monitor):
        return config(early_stop={"monitor": monitor}).early_stop.resolved_mode()

    assert resolved("auc") == resolved("peer0.gauc") == resolved({"logloss": -1}) == "max"
    assert resolved("logloss") == resolved("distill") == "min"


def test_a_weighted_monitor_must_name_known_quantities(feature_map):
    with pytest.raises(CtrDistillError, match="unknown quantity 'aucc'"):
        scripted_fit(feature_map, METRICS, early_stop={"monitor": {"aucc": 1, "logloss": -1}})


def test_lr_drops_by_the_factor_after_patience_bad_evaluations(feature_map):
    aucs = [0.6, 0.7, 0.7, 0.69, 0.71, 0.7, 0.7, 0.7, 0.7, 0.7]
    result, trainer, _ = scripted_fit(
        feature_map, aucs, lr=0.01, max_steps=len(aucs), early_stop={"patience": 10},
        lr_plateau={"factor": 0.5, "patience": 2, "min_lr": 0.003})
    # After each evaluation: two bad ones halve it and restart the count; min_lr is a floor.
    after = [0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.003, 0.003, 0.003, 0.003]
    # A record holds the learning rate its steps used, that is the one before its evaluation.
    assert [r["lr"] for r in result.history] == pytest.approx([0.01, *after[:-1]])
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(after[-1])
    assert not result.stopped_early


@pytest.mark.parametrize(("patience", "min_delta", "final_lr"), [
    (1, 0.0, 1e-2),  # every evaluation improves
    (0, 0.01, 1e-5),  # none beats the first by min_delta: three drops, 0 acting as 1
    (1, 0.01, 1e-5),
])
def test_plateau_shares_early_stoppings_min_delta(feature_map, patience, min_delta, final_lr):
    _, trainer, _ = scripted_fit(
        feature_map, [0.600, 0.602, 0.604, 0.606], lr=0.01, max_steps=4,
        early_stop={"patience": 10, "min_delta": min_delta},
        lr_plateau={"factor": 0.1, "patience": patience, "min_lr": 0.0})
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(final_lr)


def test_without_validation_data_the_last_state_is_kept(feature_map):
    trainer = trainer_for(feature_map, config(epochs=2, early_stop={"patience": 0}))
    result = trainer.fit(BatchLoader(columns(feature_map, TRAIN_ROWS, seed=1), BATCH), None)
    assert not result.stopped_early and len(result.history) == 2
    assert result.best is result.history[-1] and "valid" not in result.best


def test_the_best_evaluations_state_is_restored(feature_map):
    result, trainer, states = scripted_fit(feature_map, [0.6, 0.8, 0.7, 0.7],
                                           early_stop={"patience": 2})
    assert result.stopped_early and result.best["step"] == 2 and len(states) == 4
    restored = trainer.strategy.trained_state()
    assert restored.keys() == states[1].keys()
    assert all(torch.equal(restored[k], states[1][k]) for k in restored)
    assert not all(torch.equal(restored[k], states[3][k]) for k in restored)


def test_restored_state_scores_as_the_best_evaluation(feature_map):
    # A large learning rate overfits 320 rows quickly, so later evaluations are worse.
    trainer = trainer_for(feature_map, config(epochs=6, lr=0.05, eval_every_steps=5,
                                              early_stop={"monitor": "logloss", "patience": 2}))
    valid = columns(feature_map, 400, seed=2)
    result = trainer.fit(BatchLoader(columns(feature_map, TRAIN_ROWS, seed=1), BATCH), valid)
    assert result.best is not result.history[-1]
    best = min(result.history, key=lambda r: r["valid"]["logloss"])
    assert result.best is best
    assert trainer.evaluate(valid)["logloss"] == pytest.approx(best["valid"]["logloss"], abs=1e-6)


def test_max_steps_stops_mid_epoch_and_evaluates_there(feature_map):
    trainer = trainer_for(feature_map, config(epochs=5, batch_size=64, max_steps=7))
    train = BatchLoader(columns(feature_map, TRAIN_ROWS, seed=1), 64)  # 5 steps an epoch
    result = trainer.fit(train, columns(feature_map, 64, seed=2))
    assert result.steps == 7
    assert [(r["epoch"], r["step"]) for r in result.history] == [(0, 5), (1, 7)]


def _sgd_step(feature_map: FeatureMap, batch: dict[str, torch.Tensor], **overrides: Any
              ) -> tuple[Trainer, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One plain SGD step (lr 1: the update is minus the gradient) from a fixed init; returns
    the trainer and the parameters before and after."""
    trainer = trainer_for(feature_map, config(optimizer="sgd", lr=1.0, early_stop=None,
                                              lr_plateau=None, **overrides))
    model = trainer.strategy.model
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer.train_step(batch)
    return trainer, before, {k: v.detach().clone() for k, v in model.named_parameters()}


def test_grad_clip_bounds_the_gradient_norm(feature_map):
    batch = make_batch(feature_map, 64)
    free, _, _ = _sgd_step(feature_map, batch, grad_clip=None, embedding_l2=0.0)
    clipped, _, _ = _sgd_step(feature_map, batch, grad_clip=1e-3, embedding_l2=0.0)

    def grads(trainer: Trainer) -> dict[str, torch.Tensor]:
        return {k: p.grad for k, p in trainer.strategy.model.named_parameters()}

    def norm(gradients: dict[str, torch.Tensor]) -> float:
        return math.sqrt(sum(float(g.pow(2).sum()) for g in gradients.values()))

    raw = norm(grads(free))
    assert raw > 1e-2  # so the clip bites
    assert norm(grads(clipped)) == pytest.approx(1e-3, rel=1e-3)
    # Rescaled as a whole: the same direction, every parameter by the same factor.
    for name, gradient in grads(clipped).items():
        torch.testing.assert_close(gradient, grads(free)[name] * (1e-3 / raw), rtol=1e-3,
                                   atol=1e-12)


def test_embedding_l2_penalises_the_rows_a_batch_uses(feature_map):
    l2, batch = 10.0, make_batch(feature_map, 32)
    _, before, plain = _sgd_step(feature_map, batch, grad_clip=None, embedding_l2=0.0)
    trainer, _, decayed = _sgd_step(feature_map, batch, grad_clip=None, embedding_l2=l2)
    embedding = trainer.strategy.model.embedding
    table = before["embedding.table.weight"]
    cat_rows = (batch.cat + embedding.cat_offsets).flatten()
    seq = batch.seq
    seq_rows = (seq + embedding.seq_offsets.view(1, -1, 1))[seq != PAD_ID]
    rows, size = torch.cat([cat_rows, seq_rows]), len(batch.cat)
    # The penalty term: the squared norms of the rows used, per sample.
    torch.testing.assert_close(embedding.rows_sq_norm(batch),
                               embedding.table.weight[rows].pow(2).sum() / size)
    # Its gradient, 2 * uses * row / B, is the only difference between the two updates.
    uses = torch.bincount(rows, minlength=table.shape[0]).unsqueeze(1)
    expected = -l2 * 2 * uses * table / size
    difference = decayed["embedding.table.weight"] - plain["embedding.table.weight"]
    torch.testing.assert_close(difference, expected, rtol=1e-4, atol=1e-10)
    assert (difference[uses.squeeze(1) == 0] == 0).all() and (uses > 0).sum() < len(uses)
    for name in before:  # the other parameters move exactly as without the penalty
        if name != "embedding.table.weight":
            assert torch.equal(plain[name], decayed[name]), name


def test_sparse_embedding_trains_with_sparse_adam(feature_map):
    trainer = trainer_for(feature_map, config(epochs=3, lr=0.01, sparse_embedding=True,
                                              embedding_lr=0.05))
    table = trainer.strategy.model.embedding.table
    assert table.sparse
    dense, sparse = trainer.optimizers
    assert isinstance(dense, torch.optim.Adam) and isinstance(sparse, torch.optim.SparseAdam)
    assert sparse.param_groups[0]["params"] == [table.weight]
    assert sparse.param_groups[0]["lr"] == 0.05
    assert all(p is not table.weight for p in dense.param_groups[0]["params"])
    before = table.weight.detach().clone()
    valid = columns(feature_map, 1000, seed=2)
    result = trainer.fit(BatchLoader(columns(feature_map, 2000, seed=1), 64, seed=0), valid)
    assert table.weight.grad.is_sparse
    # Only the rows the data uses move: categorical ids start at 1, so id 0 of c0 and of c1
    # (which c3 shares) are never looked up.
    unused = [0, int(trainer.strategy.model.embedding.cat_offsets[1])]
    assert torch.equal(table.weight[unused], before[unused])
    assert not torch.equal(table.weight[1], before[1])
    losses = [r["train"]["loss"] for r in result.history]
    assert losses[-1] < losses[0] and result.best["valid"]["auc"] > 0.7, result.history

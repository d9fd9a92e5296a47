"""Vocabulary growth: unseen ids counted and appended to vocabularies, and embedding tables of
live models gaining rows for them while old rows and their optimizer state stay as they were."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from conftest import make_batch, make_feature_map
from ctrdistill.continuous.vocabulary import (
    extend,
    grow,
    grown_state,
    merge,
    unseen_counts,
    vocab_sizes,
)
from ctrdistill.data.encode import Encoder, PrepareState, StateFile
from ctrdistill.data.schema import EncodedField, FeatureMap, FieldSpec, Schema
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.models.registry import build_model
from ctrdistill.strategies.plain import PlainStrategy
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.growth import grow_embeddings
from ctrdistill.training.trainer import Trainer

GROWN = {"c1": 34, "s0": 12}  # c1 (shared by c3) and the sequence's vocabulary grow


def _grown(feature_map: FeatureMap) -> FeatureMap:
    return feature_map.model_copy(update={"fields": [
        f.model_copy(update={"vocab_size": GROWN.get(f.vocab or f.name, f.vocab_size)})
        for f in feature_map.fields]})


def _per_row(value) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0


@pytest.mark.parametrize("optimizer, sparse", [("adam", False), ("adagrad", False),
                                               ("sgd", False), ("adam", True)])
def test_growth_keeps_old_rows_and_their_optimizer_state(optimizer, sparse):
    feature_map = make_feature_map()
    torch.manual_seed(0)
    model = build_model({"name": "deepfm", "embedding_dim": 4, "hidden_units": [8]},
                        feature_map)
    config = TrainConfig(optimizer=optimizer, sparse_embedding=sparse, progress=False,
                         threads=1)
    trainer = Trainer(PlainStrategy(model), config)
    trainer.train_step(make_batch(feature_map, 64))
    tables = [m for m in model.modules() if isinstance(m, FeatureEmbedding)]
    assert len(tables) == 2  # the embedding and the linear part's weights
    before = [{o: t.field_table(o, t.vocab_sizes[o]).detach().clone() for o in t.vocab_sizes}
              for t in tables]
    states = [{k: v.clone() for o in trainer.optimizers for k, v in o.state[t.table.weight].items()
               if _per_row(v)} for t in tables]
    params = [t.table.weight for t in tables]
    assert all(states) or optimizer == "sgd"  # SGD without momentum keeps no state

    added = grow_embeddings(model, GROWN, trainer.optimizers)

    assert added == 2 * (4 + 3)
    for table, old, state, param in zip(tables, before, states, params, strict=True):
        assert table.table.weight is param  # optimizers still hold it
        for owner, rows in old.items():
            assert torch.equal(table.field_table(owner, len(rows)), rows)
        assert table.table.weight.shape[0] == 12 + 34 + 7 + 12
        new = torch.cat([torch.arange(12 + 30, 12 + 34), torch.arange(12 + 34 + 7 + 9, 65)])
        assert table.table.weight[new].abs().max() < 0.01  # drawn with init_std 1e-4
        for optimizer in trainer.optimizers:
            for key, grown in optimizer.state[param].items():
                if not _per_row(grown):
                    continue
                kept = torch.ones(65, dtype=torch.bool)
                kept[new] = False
                assert torch.equal(grown[kept], state[key]) and not grown[new].any()
    # the layout is that of a model built for the grown feature map: its state loads
    fresh = build_model({"name": "deepfm", "embedding_dim": 4, "hidden_units": [8]},
                        _grown(feature_map))
    fresh.load_state_dict(model.state_dict())
    batch = make_batch(_grown(feature_map), 64, seed=1)
    assert torch.equal(fresh.eval()(batch), model.eval()(batch))
    trainer.train_step(batch)  # new ids train
    assert grow_embeddings(model, GROWN, trainer.optimizers) == 0


def test_vocabularies_never_shrink():
    table = FeatureEmbedding(make_feature_map(), 2)
    with pytest.raises(ValueError, match="only grow"):
        table.grow({"c1": 29})


def _state() -> PrepareState:
    """A sequence field and a categorical one sharing its vocabulary (a, b), and another."""
    schema = Schema(fields=[FieldSpec(name="s", kind="sequence", max_length=3),
                            FieldSpec(name="c", share_vocab_with="s"), FieldSpec(name="d")])
    vocabularies = {"s": pl.DataFrame({"value": ["a", "b"], "count": [5, 3], "id": [2, 3]},
                                      schema={"value": pl.String, "count": pl.UInt32,
                                              "id": pl.Int32}),
                    "d": pl.DataFrame({"value": ["x"], "count": [4], "id": [2]},
                                      schema={"value": pl.String, "count": pl.UInt32,
                                              "id": pl.Int32})}
    feature_map = FeatureMap(fields=[
        EncodedField(name="c", kind="categorical", vocab_size=4, vocab="s"),
        EncodedField(name="d", kind="categorical", vocab_size=3, vocab="d"),
        EncodedField(name="s", kind="sequence", vocab_size=4, vocab="s", max_length=3)])
    return PrepareState(StateFile(recipe="parquet", options={}, schema_=schema),
                        Encoder(schema, feature_map, vocabularies))


def test_unseen_ids_are_counted_and_appended_after_the_old_ones():
    state = _state()
    frame = pl.DataFrame({"s": ["a|n|m", "n|b|a|m", None], "c": ["m", "a", "k"],
                          "d": ["x", "y", "y"]})
    counts = merge([unseen_counts(frame, state)])
    # "m" beyond max_length in row 2 is not counted; the shared vocabulary adds c's tokens
    assert counts == {"d": {"values": ["y"], "counts": [2]},
                      "s": {"values": ["k", "m", "n"], "counts": [1, 2, 2]}}
    later = {"s": {"values": ["k"], "counts": [1]}}
    added, window = grow([counts, later], min_count=2)
    assert added == {"d": {"values": ["y"], "counts": [2]},
                     "s": {"values": ["k", "m", "n"], "counts": [2, 2, 2]}}
    assert all(not c["values"] for w in window for c in w.values())
    added, window = grow([counts], min_count=3)
    assert added == {} and window == [counts]
    grown = grown_state(state, extend({}, merge([unseen_counts(frame, state)])))
    assert vocab_sizes(grown) == {"s": 7, "d": 4} and vocab_sizes(state) == {"s": 4, "d": 3}
    encoded = grown.encoder.features(frame)
    assert encoded["c"].to_list() == [5, 2, 4] and encoded["d"].to_list() == [2, 3, 3]
    assert encoded["s"].to_list()[:2] == [[2, 6, 5], [6, 3, 2]]
    assert grown.feature_map.fingerprint() != state.feature_map.fingerprint()

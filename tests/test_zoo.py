"""Every registered model: the CTRModel contract, gradients, learning, persistence, sharing."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn

from conftest import make_batch, make_feature_map
from ctrdistill.data.batch import Batch
from ctrdistill.errors import CtrDistillError
from ctrdistill.models import CTRModel, build_model, model_names
from ctrdistill.models.layers import FeatureEmbedding
from ctrdistill.models.registry import model_class
from ctrdistill.strategies.plain import PlainStrategy
from ctrdistill.training.checkpoint import load_checkpoint, save_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.trainer import Trainer

NAMES = model_names()

# Small sizes keep the whole file fast; structure (layers, paths to the logit) is unchanged.
SMALL: dict[str, dict[str, Any]] = {
    "afm": {"attention_dim": 4},
    "autoint": {"attention_layers": 2, "attention_dim": 8},
    "dcn": {"hidden_units": [32, 32]},
    "dcnv2": {"stacked_dnn_hidden_units": [32, 32], "parallel_dnn_hidden_units": [32, 32]},
    "deepfm": {"hidden_units": [32, 32]},
    "dlrm": {"bottom_mlp_units": [16], "top_mlp_units": [32, 32]},
    "dnn": {"hidden_units": [32, 32]},
    "fibinet": {"hidden_units": [32, 32]},
    "finalmlp": {"mlp1_hidden_units": [32, 32], "mlp2_hidden_units": [32],
                 "fs_hidden_units": [32], "num_heads": 4},
    "nfm": {"hidden_units": [32, 32]},
    "pnn": {"hidden_units": [32, 32]},
    "widedeep": {"hidden_units": [32, 32]},
    "xdeepfm": {"hidden_units": [32, 32], "cin_hidden_units": [8, 8]},
}

# Configurations beyond the defaults that change the computation graph.
VARIANTS: list[dict[str, Any]] = [
    *({"name": "dcnv2", "model_structure": s, "use_low_rank_mixture": mix}
      for s in ("crossnet_only", "stacked", "parallel", "stacked_parallel")
      for mix in (False, True)),
    {"name": "pnn", "product_type": "outer"},
    {"name": "autoint", "use_dnn": True, "layer_norm": True, "use_scale": True},
    {"name": "autoint", "use_residual": False, "num_heads": 1},
    {"name": "fibinet", "bilinear_type": "field_all", "excitation_activation": "sigmoid"},
    {"name": "fibinet", "bilinear_type": "field_each"},
    {"name": "xdeepfm", "split_half": False, "cin_hidden_units": [5, 3]},
    {"name": "finalmlp", "fs1_context": ["c0"], "fs2_context": ["c1", "n0"]},
    {"name": "finalmlp", "use_fs": False},
    {"name": "dlrm", "self_interaction": True},
]

# LR's weights are its own 1-dim embedding, so it never takes a shared one (see lr.py).
PRIVATE_EMBEDDING = {"lr"}

EMBEDDING_DIM = 8
TRAIN_ROWS, EPOCHS, BATCH, LR = 2000, 8, 128, 1e-2

pytestmark = pytest.mark.usefixtures("one_thread")


def small(name: str, **overrides: Any) -> dict[str, Any]:
    width = {} if name in PRIVATE_EMBEDDING else {"embedding_dim": EMBEDDING_DIM}
    return {"name": name, **width, **SMALL.get(name, {}), **overrides}


def subset(batch: Batch, index: torch.Tensor) -> Batch:
    return replace(batch, cat=batch.cat[index], num=batch.num[index], label=batch.label[index],
                   row_id=batch.row_id[index], seq=None if batch.seq is None else batch.seq[index])


def bce(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(model(batch), batch.label)


def assert_gradients_everywhere(model: CTRModel, batch: dict[str, torch.Tensor]) -> None:
    model.zero_grad()
    bce(model, batch).backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.fixture(scope="module")
def feature_map():
    return make_feature_map()


@pytest.fixture(scope="module")
def data(feature_map):
    return make_batch(feature_map, TRAIN_ROWS, seed=1), make_batch(feature_map, 4000, seed=2)


@pytest.fixture(scope="module")
def reference_auc(feature_map, data) -> float:
    """Held-out AUC of sklearn's logistic regression on the same rows and the same inputs.

    Fields that share a vocabulary share one-hot columns, as they share embedding rows, so this
    is a first-order model on what our models see; being a convex fit, it does not depend on an
    optimiser schedule. Models with pairwise or deeper crosses should match or beat it.
    """
    def one_hot(batch):
        blocks: dict[str, np.ndarray] = {}
        for i, field in enumerate(feature_map.categorical):
            ids = batch.cat[:, i].numpy()
            blocks[field.vocab] = blocks.get(field.vocab, 0) + np.eye(field.vocab_size)[ids]
        return np.hstack([*blocks.values(), batch.num.numpy()])

    train, test = data
    model = LogisticRegression(max_iter=2000).fit(one_hot(train), train.label.numpy())
    return roc_auc_score(test.label.numpy(), model.decision_function(one_hot(test)))


@pytest.mark.parametrize("name", NAMES)
def test_outputs_have_the_contract_shapes(name, feature_map):
    model = build_model(name, feature_map)  # published default sizes
    assert model.config.name == name == model.name
    model.eval()
    out = model.encode(make_batch(feature_map, 32))
    assert out.logit.shape == (32,) and out.logit.dtype == torch.float32
    assert model.hidden_dim > 0
    assert out.hidden.shape == (32, model.hidden_dim) and out.hidden.dtype == torch.float32
    torch.testing.assert_close(model(make_batch(feature_map, 32)), out.logit)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name, feature_map):
    torch.manual_seed(0)
    model = build_model(name, feature_map)
    assert_gradients_everywhere(model, make_batch(feature_map, 256))


@pytest.mark.parametrize("config", VARIANTS,
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_variants(config, feature_map):
    torch.manual_seed(0)
    model = build_model(small(**config), feature_map)
    batch = make_batch(feature_map, 64)
    out = model.encode(batch)
    assert out.logit.shape == (64,) and out.hidden.shape == (64, model.hidden_dim)
    assert_gradients_everywhere(model, batch)


@pytest.mark.parametrize("name", NAMES)
def test_works_without_numeric_or_sequence_fields(name):
    base = make_feature_map(with_sequence=False)
    feature_map = base.model_copy(update={"fields": base.categorical})
    model = build_model(small(name), feature_map)
    out = model.encode(make_batch(feature_map, 16))
    assert out.hidden.shape == (16, model.hidden_dim)


@pytest.mark.parametrize("name", NAMES)
def test_training_learns_the_signal(name, feature_map, data, reference_auc):
    train, test = data
    torch.manual_seed(0)
    model = build_model(small(name), feature_map)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    epoch_losses = []
    for _ in range(EPOCHS):
        model.train()
        total = 0.0
        for index in torch.randperm(TRAIN_ROWS).split(BATCH):
            loss = bce(model, subset(train, index))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        epoch_losses.append(total / TRAIN_ROWS)
    model.eval()
    with torch.no_grad():
        logits = model(test)
    probs, logits, labels = torch.sigmoid(logits).numpy(), logits.numpy(), test.label.numpy()
    assert epoch_losses[-1] < 0.9 * epoch_losses[0]
    # Logits, not probabilities: a trained model is confident both ways.
    assert logits.min() < 0 and logits.max() > 1
    base_rate = np.full_like(labels, train.label.mean().item())
    assert log_loss(labels, probs) < log_loss(labels, base_rate)
    auc = roc_auc_score(labels, logits)
    assert auc > 0.5 + (reference_auc - 0.5) / 2, f"AUC {auc:.3f} is too close to chance"
    assert auc > reference_auc - 0.03, f"AUC {auc:.3f} vs logistic regression {reference_auc:.3f}"


def briefly_trained(config: dict[str, Any], feature_map, train) -> CTRModel:
    """A model moved away from its initialisation (so a fresh one cannot pass for it)."""
    torch.manual_seed(0)
    model = build_model(config, feature_map)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for index in torch.arange(512).split(BATCH):
        loss = bce(model, subset(train, index))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name, feature_map, data):
    train, test = data
    model = briefly_trained(small(name), feature_map, train)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    restored = build_model(small(name), feature_map)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    model.eval()
    restored.eval()
    with torch.no_grad():
        expected, actual = model.encode(test), restored.encode(test)
    assert torch.equal(expected.logit, actual.logit)
    assert torch.equal(expected.hidden, actual.hidden)


@pytest.mark.parametrize("config", [
    *(small(name) for name in NAMES),
    # Non-default structures: the checkpoint must rebuild the model it was saved from.
    small("dcnv2", model_structure="stacked", use_low_rank_mixture=True),
    small("autoint", use_dnn=True),
    small("pnn", product_type="outer"),
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items() if k == "name" or k not in
                          {**SMALL.get(c["name"], {}), "embedding_dim": 0}))
def test_checkpoint_round_trip(config, feature_map, data, tmp_path):
    train, test = data
    model = briefly_trained(config, feature_map, train).eval()
    save_checkpoint(tmp_path / "checkpoint.pt", model, feature_map)
    torch.manual_seed(1)
    restored, trained_on = load_checkpoint(tmp_path, feature_map)
    assert type(restored) is type(model) and restored.config == model.config
    assert trained_on.fingerprint() == feature_map.fingerprint()
    assert not restored.training  # loaded for serving
    with torch.no_grad():
        expected, actual = model.encode(test), restored.encode(test)
    assert torch.equal(expected.logit, actual.logit)
    assert torch.equal(expected.hidden, actual.hidden)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_manual_seed(name, feature_map):
    batch = make_batch(feature_map, 64)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(7)
        model = build_model(small(name), feature_map)
        train_logit = model.train()(batch)  # dropout masks come from the same seed too
        return train_logit, model.eval()(batch)

    first, second = run(), run()
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_dense_layers_start_xavier_normal_with_zero_biases(feature_map):
    torch.manual_seed(0)
    model = build_model({"name": "dnn", "hidden_units": [400, 400]}, feature_map)
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    assert linears and all(torch.count_nonzero(m.bias) == 0 for m in linears)
    hidden = linears[1].weight.detach()  # 400 x 400: xavier std sqrt(2 / 800) = 0.05
    assert hidden.mean().abs() < 0.002 and abs(float(hidden.std()) - 0.05) < 0.001


@pytest.mark.parametrize("name", NAMES)
def test_sparse_embeddings(name, feature_map):
    """The trainer makes every embedding table sparse and gives it to SparseAdam; the models
    themselves know nothing of it."""
    torch.manual_seed(0)
    model = build_model(small(name), feature_map)
    tables = [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]
    assert tables and not any(m.sparse for m in model.modules() if isinstance(m, nn.Embedding))
    trainer = Trainer(PlainStrategy(model), TrainConfig(sparse_embedding=True, progress=False,
                                                        grad_clip=None))
    assert all(m.sparse for m in model.modules() if isinstance(m, nn.Embedding))
    sparse = next(o for o in trainer.optimizers if isinstance(o, torch.optim.SparseAdam))
    assert {id(p) for p in sparse.param_groups[0]["params"]} == {id(t) for t in tables}
    before = [t.detach().clone() for t in tables]
    trainer.train_step(make_batch(feature_map, 64))
    assert all(t.grad is not None and t.grad.is_sparse for t in tables)
    assert all(not torch.equal(b, t) for b, t in zip(before, tables, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_shared_embedding(name, feature_map):
    # A width unlike the config's, so a model that sizes layers from its config would break.
    shared = FeatureEmbedding(feature_map, EMBEDDING_DIM - 2)
    model = build_model(small(name), feature_map, embedding=shared)
    other = build_model(small("dnn"), feature_map, embedding=shared)
    batch = make_batch(feature_map, 32)
    assert model.encode(batch).hidden.shape == (32, model.hidden_dim)
    if name in PRIVATE_EMBEDDING:
        assert model.embedding is not shared
        return
    assert model.embedding is shared and other.embedding is shared
    common = {id(p) for p in model.parameters()} & {id(p) for p in other.parameters()}
    assert common == {id(p) for p in shared.parameters()}
    # Training one model moves the other's input representation.
    other.eval()
    with torch.no_grad():
        before = other(batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    bce(model, batch).backward()
    optimizer.step()
    with torch.no_grad():
        assert not torch.equal(before, other(batch))


@pytest.mark.parametrize(("config", "message"), [
    ({"name": "dcnv2", "model_structure": "stacked", "stacked_dnn_hidden_units": []},
     "stacked_dnn_hidden_units"),
    ({"name": "dcnv2", "model_structure": "mixed"}, "model_structure"),
    ({"name": "xdeepfm", "cin_hidden_units": [3, 4]}, "even"),
    ({"name": "finalmlp", "num_heads": 3}, "num_heads"),
    ({"name": "pnn", "product_type": "kernel"}, "product_type"),
    ({"name": "fibinet", "bilinear_type": "pairs"}, "bilinear_type"),
    ({"name": "deepfm", "dropout": 1.0}, "dropout"),
    ({"name": "dnn", "activation": "rleu"}, "activation: Input should be 'relu'"),
    ({"name": "dcnv2", "activation": "swish"}, "activation"),
    ({"name": "dlrm", "activation": "ReLU"}, "activation"),
    ({"name": "finalmlp", "activation": "elu"}, "activation"),
    ({"name": "fibinet", "excitation_activation": "softmax"}, "excitation_activation"),
    ({"name": "dnn", "hidden_units": [400, 0]}, "hidden_units.1: Input should be greater than 0"),
    ({"name": "deepfm", "hidden_units": [-8]}, "hidden_units.0"),
    ({"name": "lr", "embedding_dim": 16}, "embedding_dim must be 1"),
])
def test_invalid_configs_are_rejected(config, message, feature_map):
    # One line naming the key, before anything is built (no traceback from deep in a layer).
    with pytest.raises(CtrDistillError, match=message) as error:
        build_model(config, feature_map)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
def test_dlrm_numerics_enter_only_through_the_bottom_mlp(feature_map, shared):
    """DLRM's interaction crosses the bottom MLP's vector with the sparse fields' embeddings;
    numeric fields have no embedding there, even when a shared embedding provides one."""
    embedding = FeatureEmbedding(feature_map, EMBEDDING_DIM) if shared else None
    torch.manual_seed(0)
    model = build_model(small("dlrm"), feature_map, embedding=embedding).eval()
    with torch.no_grad():
        for parameter in model.embedding.parameters():  # large enough for any path to show
            nn.init.normal_(parameter)
    assert (model.embedding.numeric is not None) == shared
    vectors = len(feature_map.categorical) + len(feature_map.sequence) + 1
    assert model.interaction.output_dim == EMBEDDING_DIM + vectors * (vectors - 1) // 2
    batch = make_batch(feature_map, 32)
    changed = replace(batch, num=batch.num + 1.0)
    with torch.no_grad():
        before = model(batch)
        assert not torch.allclose(model(changed), before)  # the numerics count...
        dense = model.bottom(batch.num)
        handle = model.bottom.register_forward_hook(lambda module, args, output: dense)
        try:
            frozen = model(changed)
        finally:
            handle.remove()
    assert torch.equal(frozen, before)  # ...but only through the bottom MLP


def test_dlrm_on_numeric_fields_only(feature_map):
    numeric = feature_map.model_copy(update={"fields": feature_map.numeric})
    model = build_model(small("dlrm"), numeric)
    batch = Batch(cat=torch.zeros(8, 0, dtype=torch.long), num=torch.randn(8, 2),
                  label=torch.zeros(8), row_id=torch.arange(8))
    assert model.encode(batch).hidden.shape == (8, model.hidden_dim)


def test_fm_logit_is_its_bias_plus_the_sum_of_its_hidden(feature_map):
    model = build_model(small("fm"), feature_map)
    with torch.no_grad():
        nn.init.normal_(model.embedding.table.weight)  # make the second-order part count
        out = model.encode(make_batch(feature_map, 16))
    torch.testing.assert_close(out.logit, out.hidden.sum(1) + model.bias)


def test_unknown_finalmlp_context_field(feature_map):
    with pytest.raises(CtrDistillError, match="unknown context fields"):
        build_model({"name": "finalmlp", "fs1_context": ["nope"]}, feature_map)


def test_models_doc_matches_the_configs():
    """docs/models.md has a summary row and a table of keys and defaults for every model."""
    doc = (Path(__file__).parents[1] / "docs" / "models.md").read_text()
    sections = {section.split("`")[1]: section for section in doc.split("\n### ")[1:]}
    assert sorted(sections) == NAMES
    for name, section in sections.items():
        assert f"| `{name}` |" in doc.split("\n### ")[0], f"{name} has no summary row"
        cells = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `")]
        documented = {key.strip(" `"): value.strip(" `") for key, value in cells}
        fields = model_class(name).config_class.model_fields
        expected = {key: json.dumps(f.default_factory() if f.default_factory else f.default)
                    for key, f in fields.items() if key != "name"}
        assert documented == expected, name

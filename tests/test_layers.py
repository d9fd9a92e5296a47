"""Shared interaction layers against small cases computed by hand (explicit loops over pairs)."""

from __future__ import annotations

import itertools
from typing import get_args

import pytest
import torch
from torch import nn

from conftest import make_batch, make_feature_map
from ctrdistill.data.batch import Batch
from ctrdistill.models.layers import (
    CIN,
    AttentionalPooling,
    BilinearInteraction,
    CrossNet,
    CrossNetMix,
    CrossNetV2,
    DotInteraction,
    FeatureEmbedding,
    FeatureGating,
    FeatureLinear,
    FMInteraction,
    InnerProductInteraction,
    InteractionAggregation,
    MultiHeadSelfAttention,
    OuterProductInteraction,
    SENETLayer,
)
from ctrdistill.models.layers.mlp import ACTIVATIONS, MLP, Activation, activation

B, F, D = 3, 4, 5


@pytest.fixture
def emb() -> torch.Tensor:
    return torch.randn(B, F, D, generator=torch.Generator().manual_seed(0))


def pairs(n: int = F):
    return list(itertools.combinations(range(n), 2))


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_fm_interaction_is_the_pairwise_sum(emb):
    expected = sum(emb[:, i] * emb[:, j] for i, j in pairs())
    out = FMInteraction()(emb)
    close(out, expected)
    # Summed over D it is FM's second-order term, the sum of pairwise dot products.
    close(out.sum(1), sum((emb[:, i] * emb[:, j]).sum(-1) for i, j in pairs()))


def test_inner_products_are_explicit_pairwise_dots(emb):
    layer = InnerProductInteraction(F)
    assert layer.output_dim == F * (F - 1) // 2
    expected = torch.stack([(emb[:, i] * emb[:, j]).sum(-1) for i, j in pairs()], 1)
    close(layer(emb), expected)
    with_self = InnerProductInteraction(F, self_interaction=True)
    expected = torch.stack([(emb[:, i] * emb[:, j]).sum(-1)
                            for i, j in itertools.combinations_with_replacement(range(F), 2)], 1)
    close(with_self(emb), expected)


def test_outer_product_is_the_sum_of_all_pairwise_outer_products(emb):
    expected = sum(torch.einsum("bd,be->bde", emb[:, i], emb[:, j])
                   for i in range(F) for j in range(F))
    close(OuterProductInteraction(D)(emb), expected.flatten(1))


def test_crossnet_layer_by_hand():
    x0 = torch.randn(B, 6)
    net = CrossNet(6, num_layers=1)
    w, b = net.weights[0].detach(), torch.randn(6)
    with torch.no_grad():
        net.biases[0].copy_(b)
    expected = x0 * (x0 @ w).unsqueeze(1) + b + x0
    close(net(x0), expected)
    two = CrossNet(6, num_layers=2)
    x1 = x0 * (x0 @ two.weights[0]).unsqueeze(1) + two.biases[0] + x0
    close(two(x0), x0 * (x1 @ two.weights[1]).unsqueeze(1) + two.biases[1] + x1)


def test_crossnet_v2_layer_by_hand():
    x0 = torch.randn(B, 6)
    net = CrossNetV2(6, num_layers=1)
    weight, bias = net.layers[0].weight, net.layers[0].bias
    close(net(x0), x0 * (x0 @ weight.T + bias) + x0)


def test_crossnet_mix_with_one_expert_by_hand():
    x0 = torch.randn(B, 6)
    net = CrossNetMix(6, num_layers=1, low_rank=3, num_experts=1)
    with torch.no_grad():
        net.biases[0].normal_()
    v, c, u = net.down[0][0], net.mix[0][0], net.up[0][0]
    low = torch.tanh(torch.tanh(x0 @ v) @ c)
    # A single expert gets gate weight 1 whatever the gate says.
    close(net(x0), x0 * (low @ u + net.biases[0]) + x0)
    mixed = CrossNetMix(6, num_layers=2, low_rank=3, num_experts=4)
    assert mixed(x0).shape == (B, 6)


def test_cin_shapes_follow_split_half(emb):
    assert CIN(F, [4, 4, 3], split_half=True)(emb).shape == (B, 2 + 2 + 3)
    assert CIN(F, [4, 4, 3], split_half=False)(emb).shape == (B, 4 + 4 + 3)
    with pytest.raises(ValueError, match="even"):
        CIN(F, [3, 4], split_half=True)


def test_cin_two_layers_by_hand(emb):
    cin = CIN(F, [2, 3], split_half=False)

    def layer(k: int, x: torch.Tensor) -> torch.Tensor:
        # X_k[o] = sum_{m,h} W[o, m * H + h] (X_0[m] ⊙ X_{k-1}[h]) + b[o], each a D-vector.
        weight, bias = cin.convs[k].weight.squeeze(-1), cin.convs[k].bias
        maps = x.shape[1]
        out = torch.zeros(B, weight.shape[0], D)
        for o in range(weight.shape[0]):
            for m in range(F):
                for h in range(maps):
                    out[:, o] += weight[o, m * maps + h] * emb[:, m] * x[:, h]
            out[:, o] += bias[o]
        return out

    x1 = layer(0, emb)
    x2 = layer(1, x1)
    close(cin(emb), torch.cat([x1.sum(-1), x2.sum(-1)], 1))


def test_attention_shapes_respect_heads_times_head_dim(emb):
    layer = MultiHeadSelfAttention(D, head_dim=3, num_heads=4, layer_norm=True, use_scale=True)
    assert layer.output_dim == 12
    out = layer(emb)
    assert out.shape == (B, F, 12)
    assert MultiHeadSelfAttention(12, head_dim=2, num_heads=3)(out).shape == (B, F, 6)


def test_attention_single_head_by_hand(emb):
    layer = MultiHeadSelfAttention(D, head_dim=3, num_heads=1, use_residual=False)
    q, k, v = emb @ layer.query.weight.T, emb @ layer.key.weight.T, emb @ layer.value.weight.T
    expected = torch.relu(torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v)
    close(layer(emb), expected)
    residual = MultiHeadSelfAttention(D, head_dim=3, num_heads=1, use_residual=True)
    q, k, v = (emb @ residual.query.weight.T, emb @ residual.key.weight.T,
               emb @ residual.value.weight.T)
    expected = torch.relu(torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v
                          + emb @ residual.residual.weight.T)
    close(residual(emb), expected)


def test_senet_weights_shape_and_sign(emb):
    relu = SENETLayer(F, reduction_ratio=2)
    weights = relu.field_weights(emb)
    assert weights.shape == (B, F)
    assert (weights >= 0).all()
    close(relu(emb), emb * weights.unsqueeze(-1))
    sigmoid = SENETLayer(F, reduction_ratio=2, excitation_activation="sigmoid")
    assert (sigmoid.field_weights(emb) > 0).all()


@pytest.mark.parametrize("kind", ["field_all", "field_each", "field_interaction"])
def test_bilinear_by_hand(emb, kind):
    layer = BilinearInteraction(F, D, kind)
    w = layer.weight
    expected = []
    for p, (i, j) in enumerate(pairs()):
        matrix = w[{"field_all": 0, "field_each": i, "field_interaction": p}[kind]]
        expected.append((emb[:, i] @ matrix) * emb[:, j])
    close(layer(emb), torch.stack(expected, 1))


def test_bilinear_rejects_unknown_type():
    with pytest.raises(ValueError, match="bilinear_type"):
        BilinearInteraction(F, D, "field_pair")  # type: ignore[arg-type]


def test_attentional_pooling_by_hand(emb):
    layer = AttentionalPooling(F, D, attention_dim=3)
    products = torch.stack([emb[:, i] * emb[:, j] for i, j in pairs()], 1)
    scores = torch.stack([layer.attention(products[:, p]) for p in range(len(pairs()))], 1)
    expected = (torch.softmax(scores, dim=1) * products).sum(1)
    close(layer(emb), expected)


def test_dot_interaction_by_hand(emb):
    dense = torch.randn(B, D)
    layer = DotInteraction(F, D, with_dense=True)
    vectors = torch.cat([dense.unsqueeze(1), emb], 1)
    dots = torch.stack([(vectors[:, i] * vectors[:, j]).sum(-1) for i, j in pairs(F + 1)], 1)
    out = layer(emb, dense)
    assert out.shape == (B, layer.output_dim) == (B, D + (F + 1) * F // 2)
    close(out, torch.cat([dense, dots], 1))
    plain = DotInteraction(F, D, with_dense=False)
    close(plain(emb), torch.stack([(emb[:, i] * emb[:, j]).sum(-1) for i, j in pairs()], 1))
    with pytest.raises(ValueError, match="dense"):
        plain(emb, dense)


def test_interaction_aggregation_shape_and_hand_case():
    x, y = torch.randn(B, 6), torch.randn(B, 4)
    fusion = InteractionAggregation(6, 4, num_heads=2)
    out = fusion(x, y)
    assert out.shape == (B,)
    expected = fusion.w_x(x).squeeze(-1) + fusion.w_y(y).squeeze(-1)
    for h in range(2):
        xh, yh = x[:, 3 * h : 3 * h + 3], y[:, 2 * h : 2 * h + 2]
        expected = expected + ((xh @ fusion.w_xy[h]) * yh).sum(-1)
    close(out, expected)
    with pytest.raises(ValueError, match="num_heads"):
        InteractionAggregation(6, 4, num_heads=4)


def test_feature_gating(emb):
    shared = FeatureGating(F * D, D, context_fields=[], hidden_units=[8])
    out = shared(emb)
    assert out.shape == (B, F * D)
    gate = out / emb.flatten(1)
    assert ((gate > 0) & (gate < 2)).all()
    close(gate, gate[:1].expand_as(gate))  # no context: one gate for every sample
    contextual = FeatureGating(F * D, D, context_fields=[0, 2], hidden_units=[8])
    changed = emb.clone()
    changed[:, 1] += 1.0  # not a context field: the gate must not move
    close(contextual(changed) / changed.flatten(1), contextual(emb) / emb.flatten(1))


# The conftest feature map: c0 (12 ids), c1 (30), c2 (7), c3 (shares c1's vocabulary), numeric
# n0 and n1, sequence s0 (9 ids, length 4). Rows: c0 from 0, c1 from 12, c2 from 42, s0 from 49.
OFFSETS = {"c0": 0, "c1": 12, "c2": 42, "s0": 49}


def hand_batch() -> Batch:
    return Batch(cat=torch.tensor([[3, 5, 1, 5], [0, 29, 6, 2]]),
                 num=torch.tensor([[2.0, -1.0], [0.5, 0.0]]),
                 seq=torch.tensor([[[1, 2, 0, 0]], [[0, 0, 0, 0]]]),  # 0 is padding
                 label=torch.tensor([1.0, 0.0]), row_id=torch.tensor([0, 1]))


def randomised(layer: nn.Module) -> nn.Module:
    """Unit-scale parameters, so every term is visible next to the others."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in layer.parameters():
            nn.init.normal_(parameter)
    return layer


def expected_fields(embedding: FeatureEmbedding, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, F, D) by hand: table rows by vocabulary offset, value-scaled numeric vectors, and the
    mean of the non-padding rows of a sequence (zeros when all of it is padding)."""
    table, rows = embedding.table.weight, []
    for b in range(len(batch.cat)):
        fields = [table[OFFSETS[vocab] + int(batch.cat[b, i])]
                  for i, vocab in enumerate(["c0", "c1", "c2", "c1"])]
        fields += [batch.num[b, k] * embedding.numeric[k] for k in range(2)]
        ids = [int(i) for i in batch.seq[b, 0] if i != 0]
        fields.append(torch.stack([table[OFFSETS["s0"] + i] for i in ids]).mean(0) if ids
                      else torch.zeros(embedding.dim))
        rows.append(torch.stack(fields))
    return torch.stack(rows)


def test_feature_embedding_lays_out_vocabularies_and_fields():
    embedding = FeatureEmbedding(make_feature_map(), 3)
    assert embedding.vocab_offsets == OFFSETS
    assert embedding.num_rows == embedding.table.num_embeddings == 49 + 9
    assert embedding.field_names == ["c0", "c1", "c2", "c3", "n0", "n1", "s0"]
    assert embedding.num_fields == 7 and embedding.numeric.shape == (2, 3)


def test_feature_embedding_by_hand():
    embedding = randomised(FeatureEmbedding(make_feature_map(), 3))
    batch = hand_batch()
    out = embedding(batch)
    assert out.shape == (2, 7, 3)
    close(out, expected_fields(embedding, batch))
    # c1 and c3 share a vocabulary, so the same id is the same row (and the same gradient).
    assert torch.equal(out[0, 1], out[0, 3])
    assert torch.equal(out[1, 6], torch.zeros(3))  # an all-padding sequence pools to zeros
    random = make_batch(make_feature_map(), 16)
    close(embedding(random), expected_fields(embedding, random))


def test_feature_embedding_squared_norm_of_the_rows_used():
    embedding = randomised(FeatureEmbedding(make_feature_map(), 3))
    batch = hand_batch()
    table = embedding.table.weight
    used = [0 + 3, 12 + 5, 42 + 1, 12 + 5, 0 + 0, 12 + 29, 42 + 6, 12 + 2,  # c1/c3 row twice
            49 + 1, 49 + 2]  # the sequence's non-padding ids; numerics are not table rows
    close(embedding.rows_sq_norm(batch), sum(table[r].pow(2).sum() for r in used) / 2)


def test_feature_embedding_without_numeric_fields():
    embedding = randomised(FeatureEmbedding(make_feature_map(), 3, numeric=False))
    assert embedding.numeric is None and embedding.n_num == 0 and embedding.num_fields == 5
    assert embedding.field_names == ["c0", "c1", "c2", "c3", "s0"]
    batch = hand_batch()
    full = FeatureEmbedding(make_feature_map(), 3)
    with torch.no_grad():
        full.table.weight.copy_(embedding.table.weight)
    close(embedding(batch), full(batch)[:, [0, 1, 2, 3, 6]])


def test_mlp_layer_order_and_output_dim():
    mlp = MLP(6, [5, 4], "tanh", dropout=0.2, batch_norm=True, output_dim=3)
    kinds = [type(m) for m in mlp.net]
    block = [nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout]
    assert kinds == [*block, *block, nn.Linear]
    assert [m.out_features for m in mlp.net if isinstance(m, nn.Linear)] == [5, 4, 3]
    assert mlp.output_dim == 3 and mlp(torch.randn(B, 6)).shape == (B, 3)
    plain = MLP(6, [5, 4])  # no batch norm, no dropout, no output layer
    assert [type(m) for m in plain.net] == [nn.Linear, nn.ReLU] * 2 and plain.output_dim == 4
    assert MLP(6, [], output_dim=1).output_dim == 1 and MLP(6, []).output_dim == 6


def test_mlp_by_hand():
    mlp = randomised(MLP(6, [5], "tanh", batch_norm=True, output_dim=2)).eval()
    linear, norm, _, head = mlp.net
    x = torch.randn(B, 6)
    # Eval-mode batch norm with fresh running statistics (mean 0, variance 1).
    hidden = torch.tanh((x @ linear.weight.T + linear.bias) / (1 + norm.eps) ** 0.5
                        * norm.weight + norm.bias)
    close(mlp(x), hidden @ head.weight.T + head.bias)


def test_activation_names_match_the_config_type():
    assert set(get_args(Activation)) == set(ACTIVATIONS)
    assert all(isinstance(activation(name), nn.Module) for name in ACTIVATIONS)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        activation("swish")  # type: ignore[arg-type]


@pytest.mark.parametrize("excitation", ["relu", "sigmoid"])
def test_senet_by_hand(emb, excitation):
    layer = SENETLayer(F, reduction_ratio=2, excitation_activation=excitation)
    down, up = layer.excitation[0].weight, layer.excitation[2].weight  # (2, F), (F, 2)
    assert down.shape == (2, F) and up.shape == (F, 2)
    squeezed = emb.mean(-1)  # (B, F): one number per field
    raw = torch.relu(squeezed @ down.T) @ up.T
    weights = torch.relu(raw) if excitation == "relu" else torch.sigmoid(raw)
    close(layer.field_weights(emb), weights)
    close(layer(emb), emb * weights.unsqueeze(-1))
    assert SENETLayer(F, reduction_ratio=3).excitation[0].out_features == 1  # floor, at least 1


def test_feature_linear_by_hand():
    layer = randomised(FeatureLinear(make_feature_map()))
    batch = hand_batch()
    out = layer(batch)
    assert out.shape == (2, 7) and layer.output_dim == 7
    weights = expected_fields(layer.weights, batch).squeeze(-1)  # one number per field
    close(out, weights)
    # Summed, it is logistic regression's first-order term.
    w, v = layer.weights.table.weight[:, 0], layer.weights.numeric[:, 0]
    explicit = torch.stack([
        w[3] + w[12 + 5] + w[42 + 1] + w[12 + 5] + 2.0 * v[0] - 1.0 * v[1] + (w[50] + w[51]) / 2,
        w[0] + w[12 + 29] + w[42 + 6] + w[12 + 2] + 0.5 * v[0]])
    close(out.sum(1), explicit)

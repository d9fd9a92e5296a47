"""Mutual learning and KDEF: loss terms against hand computation, stop-gradients, N=1, and tiny
end-to-end runs through the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
import torch
import yaml
from torch import nn

from conftest import labels_batch, make_batch, make_feature_map, prepare_synthetic
from ctrdistill.cli import main
from ctrdistill.models.ensembles import KDEFModel
from ctrdistill.models.registry import build_model
from ctrdistill.strategies.kdef import KDEFStrategy, kdef_terms, peer_weights
from ctrdistill.strategies.losses import distill_distance as distance
from ctrdistill.strategies.mutual import MutualStrategy
from ctrdistill.strategies.plain import PlainStrategy
from ctrdistill.training.checkpoint import load_checkpoint, save_checkpoint

Y = [1.0, 0.0, 1.0]


class FixedLogits(nn.Module):
    """A 'peer' whose logits are its parameters, so gradients are easy to inspect."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.z = nn.Parameter(torch.tensor(values))

    def forward(self, batch):
        return self.z


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _bce(z: list[float]) -> float:
    return -sum(y * math.log(_sig(v)) + (1 - y) * math.log(1 - _sig(v))
                for y, v in zip(Y, z, strict=True)) / len(Y)


def _mse_probs(a: list[float], b: list[float]) -> float:
    return sum((_sig(x) - _sig(v)) ** 2 for x, v in zip(a, b, strict=True)) / len(a)


PEERS = [[0.5, -1.0, 2.0], [1.5, 0.3, -0.4], [-0.2, -0.7, 0.9]]


def test_mutual_loss_matches_hand_computation():
    strategy = MutualStrategy([FixedLogits(z) for z in PEERS], "mse_probs", weight=0.5)
    terms = strategy.loss(labels_batch(torch.tensor(Y)))
    expected = 0.0
    for n, z in enumerate(PEERS):
        others = [PEERS[i] for i in range(3) if i != n]
        expected += _bce(z) + 0.5 / 2 * sum(_mse_probs(o, z) for o in others)
    assert float(terms["loss"].detach()) == pytest.approx(expected, rel=1e-5)


def test_mutual_stop_gradient_and_warmup():
    peers = [FixedLogits(z) for z in PEERS]
    strategy = MutualStrategy(peers, "kl", warmup_steps=5)
    labels = torch.tensor(Y)
    strategy.start_step(0, 0)  # warming up: pure BCE
    assert float(strategy.loss(labels_batch(labels))["mutual"]) == 0.0
    strategy.start_step(5, 0)
    strategy.loss(labels_batch(labels))["loss"].backward()
    # Peer 0's gradient comes only from its own loss (the others' terms treat it as constant).
    reference = [FixedLogits(z) for z in PEERS]
    own = nn.functional.binary_cross_entropy_with_logits(reference[0].z, labels) + sum(
        distance(reference[i].z.detach(), reference[0].z, "kl") for i in (1, 2)) / 2
    own.backward()
    assert torch.allclose(peers[0].z.grad, reference[0].z.grad, atol=1e-6)


@pytest.mark.parametrize("kind", ["mse_probs", "kl", "mse_logits"])
def test_distances_vanish_on_agreement(kind):
    z = torch.tensor([0.3, -2.0, 4.0])
    assert float(distance(z, z, kind)) == pytest.approx(0.0, abs=1e-6)
    assert float(distance(z, z + 1, kind)) > 0


def test_mutual_predict_serves_mean():
    strategy = MutualStrategy([FixedLogits(z) for z in PEERS])
    out = strategy.predict({})
    assert set(out) == {"served", "peer0", "peer1", "peer2"}
    assert torch.allclose(out["served"], torch.tensor(PEERS).mean(0))


def test_kdef_loss_matches_hand_computation():
    z = [[0.5, -1.0, 2.0], [1.5, 0.3, -0.4]]
    p = [[_sig(v) for v in row] for row in z]
    p_t = [_sig((a + b) / 2) for a, b in zip(*z, strict=True)]
    s = [sum(1 - abs(y - q) for y, q in zip(Y, row, strict=True)) / 3 for row in p]
    softmin = [math.exp(-v) / sum(math.exp(-u) for u in s) for v in s]
    mse = [sum((a - b) ** 2 for a, b in zip(row, p_t, strict=True)) / 3 for row in p]
    pair01 = sum((a - b) ** 2 for a, b in zip(p[0], p[1], strict=True)) / 3
    # With N=2 each sub-network has one peer, whose softmax weight is 1.
    expected = _bce(z[0]) + _bce(z[1]) + softmin[0] * mse[0] + softmin[1] * mse[1] + pair01
    terms = kdef_terms(torch.tensor(z), torch.tensor(Y))
    assert float(terms["loss"].detach()) == pytest.approx(expected, rel=1e-5)


Z3 = [[0.5, -1.0, 2.0], [1.5, 0.3, -0.4], [-0.8, -0.2, 0.9]]


def test_kdef_loss_with_three_subnetworks_matches_hand_computation():
    """N=3, so each sub-network has two peers and the peer weights are not trivially 1."""
    n, b = len(Z3), len(Y)
    p = [[_sig(v) for v in row] for row in Z3]
    p_t = [_sig(sum(row[i] for row in Z3) / n) for i in range(b)]
    s = [sum(1 - abs(y - q) for y, q in zip(Y, row, strict=True)) / b for row in p]

    def mse(u: list[float], v: list[float]) -> float:
        return sum((x - w) ** 2 for x, w in zip(u, v, strict=True)) / len(u)

    supervised = sum(_bce(z) for z in Z3)
    softmin = [math.exp(-v) / sum(math.exp(-u) for u in s) for v in s]
    teach = sum(softmin[k] * mse(p[k], p_t) for k in range(n))
    # w_ij: softmax of s_j over the peers j != i of sub-network i (rows sum to 1)
    w = [[0.0 if j == i else math.exp(s[j]) / sum(math.exp(s[m]) for m in range(n) if m != i)
          for j in range(n)] for i in range(n)]
    peer = sum(sum(w[i][j] * mse(p[i], p[j]) for j in range(n) if j != i)
               for i in range(n)) / n
    terms = kdef_terms(torch.tensor(Z3), torch.tensor(Y))
    assert float(terms["bce"]) == pytest.approx(supervised, rel=1e-6)
    assert float(terms["teach"]) == pytest.approx(teach, rel=1e-6)
    assert float(terms["peer"]) == pytest.approx(peer, rel=1e-6)
    assert float(terms["loss"].detach()) == pytest.approx(supervised + teach + peer, rel=1e-6)
    assert torch.allclose(peer_weights(torch.tensor(s)), torch.tensor(w), atol=1e-7)
    # The other reading, softmax over all N with the j = i term dropped, differs: this pins it.
    over_all = [[math.exp(s[j]) / sum(math.exp(v) for v in s) for j in range(n)]
                for i in range(n)]
    peer_all = sum(sum(over_all[i][j] * mse(p[i], p[j]) for j in range(n) if j != i)
                   for i in range(n)) / n
    assert abs(peer_all - peer) > 1e-3 * peer


def test_kdef_three_subnetworks_stop_gradients():
    """Each sub-network's gradient is that of its own terms with sg(p_T), sg(p_j) and the
    (detached) exam-score weights held constant."""
    z = torch.tensor(Z3, requires_grad=True)
    labels = torch.tensor(Y)
    kdef_terms(z, labels)["loss"].backward()
    z_ref = z.detach().clone().requires_grad_(True)
    probs = torch.sigmoid(z_ref)
    fixed = torch.sigmoid(z.detach())
    p_t = torch.sigmoid(z.detach().mean(0))
    s = (1 - (labels - fixed).abs()).mean(1)
    softmin, w = torch.softmax(-s, 0), peer_weights(s)
    # Sub-network k's own terms depend on row k only, so their sum has them as row gradients.
    own = sum(nn.functional.binary_cross_entropy_with_logits(z_ref[k], labels)
              + softmin[k] * (probs[k] - p_t).pow(2).mean()
              + sum(w[k, j] * (probs[k] - fixed[j]).pow(2).mean() for j in range(3)) / 3
              for k in range(3))
    own.backward()
    assert torch.allclose(z.grad, z_ref.grad, atol=1e-6)


def test_kdef_weights_sum_to_one_and_teacher_is_detached():
    scores = torch.tensor([0.6, 0.8, 0.7, 0.5])
    w = peer_weights(scores)
    assert torch.allclose(w.sum(1), torch.ones(4))
    assert torch.all(w.diagonal() == 0)
    assert w[0, 1] > w[0, 2] > w[0, 3]  # better peers teach more
    # Gradient of the loss w.r.t. z_k through the teacher would couple the sub-networks; with
    # sg(p_T) and sg(p_j), the cross-terms vanish: d(loss - own terms)/dz_k involves only p_k.
    z = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.3, -0.4]], requires_grad=True)
    labels = torch.tensor(Y)
    kdef_terms(z, labels)["loss"].backward()
    z_ref = z.detach().clone().requires_grad_(True)
    probs = torch.sigmoid(z_ref)
    p_t = torch.sigmoid(z.detach().mean(0))
    s = (1 - (labels - probs.detach()).abs()).mean(1)
    own = (nn.functional.binary_cross_entropy_with_logits(z_ref[0], labels)
           + torch.softmax(-s, 0)[0] * (probs[0] - p_t).pow(2).mean()
           + 0.5 * (probs[0] - probs[1].detach()).pow(2).mean())
    own.backward()
    assert torch.allclose(z.grad[0], z_ref.grad[0], atol=1e-6)


def test_kdef_single_subnetwork_is_plain_training():
    fm = make_feature_map()
    batch = make_batch(fm, 32)
    torch.manual_seed(0)
    model = KDEFModel.build({"name": "dnn", "embedding_dim": 4, "hidden_units": [8],
                             "dropout": 0.0}, fm, num_subnetworks=1)
    plain = PlainStrategy(model.subnetworks[0])
    kdef = KDEFStrategy(model, "kdef")
    expected = float(plain.loss(batch)["loss"].detach())
    assert float(kdef.loss(batch)["loss"].detach()) == pytest.approx(expected, rel=1e-6)
    out = kdef.predict(batch)
    assert torch.allclose(out["served"], out["sub0"])


def test_kdef_modes_and_shared_embedding():
    fm = make_feature_map()
    batch = make_batch(fm, 32)
    model = KDEFModel.build({"name": "dnn", "embedding_dim": 4, "hidden_units": [8]}, fm, 3)
    assert all(s.embedding is model.embedding for s in model.subnetworks)
    with pytest.raises(ValueError, match="independent sub-networks need their own embeddings"):
        KDEFStrategy(model, "independent")
    # the ensemble checkpoint config rebuilds through the registry
    rebuilt = build_model(model.config.model_dump(), fm)
    rebuilt.load_state_dict(model.state_dict())
    model.eval()
    rebuilt.eval()
    assert torch.allclose(rebuilt(batch), model(batch))


class FixedMembers(nn.Module):
    """A KDEF 'model' whose (N, B) sub-network logits are its parameter: losses and gradients
    by hand."""

    def __init__(self, logits: list[list[float]], shared_embedding: bool) -> None:
        super().__init__()
        self.z = nn.Parameter(torch.tensor(logits))
        self.config = SimpleNamespace(shared_embedding=shared_embedding)

    def member_logits(self, batch) -> torch.Tensor:
        return self.z


def _bce_of(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean BCE by hand, in float64 Python arithmetic."""
    pairs = list(zip(labels.tolist(), logits.tolist(), strict=True))
    return -sum(y * math.log(_sig(z)) + (1 - y) * math.log(1 - _sig(z)) for y, z in pairs) / len(
        pairs)


def test_kdef_naive_loss_is_bce_of_the_mean_logit():
    """naive: BCE(y, sigmoid(mean_k z_k)) only; d/dz_kb = (sigmoid(mean_b) - y_b) / (N B), the
    same for every sub-network."""
    members = FixedMembers(Z3, shared_embedding=True)
    terms = KDEFStrategy(members, "naive").loss(labels_batch(torch.tensor(Y)))
    n, b = len(Z3), len(Y)
    mean = [sum(row[i] for row in Z3) / n for i in range(b)]
    assert float(terms["loss"].detach()) == pytest.approx(_bce(mean), rel=1e-6)
    assert set(terms) == {"loss", "bce"}  # no teacher or peer term
    terms["loss"].backward()
    expected = [[(_sig(m) - y) / (n * b) for m, y in zip(mean, Y, strict=True)]] * n
    assert torch.allclose(members.z.grad, torch.tensor(expected), atol=1e-7)


def test_kdef_independent_loss_is_the_sum_of_own_bces():
    """independent: sum_k BCE(y, p_k); d/dz_kb = (p_kb - y_b) / B depends on z_kb alone."""
    members = FixedMembers(Z3, shared_embedding=False)
    terms = KDEFStrategy(members, "independent").loss(labels_batch(torch.tensor(Y)))
    assert float(terms["loss"].detach()) == pytest.approx(sum(_bce(z) for z in Z3), rel=1e-6)
    assert set(terms) == {"loss", "bce"}
    terms["loss"].backward()
    expected = [[(_sig(v) - y) / len(Y) for v, y in zip(row, Y, strict=True)] for row in Z3]
    assert torch.allclose(members.z.grad, torch.tensor(expected), atol=1e-7)


def _subnet_grads(strategy: KDEFStrategy, batch, k: int) -> list[torch.Tensor]:
    strategy.zero_grad(set_to_none=True)
    strategy.loss(batch)["loss"].backward()
    return [p.grad.clone() for p in strategy.model.subnetworks[k].parameters()]


def _perturb(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.5)


NO_DROPOUT = {"name": "dnn", "embedding_dim": 4, "hidden_units": [8], "dropout": 0.0}


def test_kdef_naive_mode_on_a_real_ensemble():
    fm = make_feature_map()
    batch = make_batch(fm, 32)
    torch.manual_seed(0)
    model = KDEFModel.build(NO_DROPOUT, fm, 3)
    strategy = KDEFStrategy(model, "naive")
    with torch.no_grad():
        mean = torch.stack([sub(batch) for sub in model.subnetworks]).mean(0)
    assert float(strategy.loss(batch)["loss"].detach()) == pytest.approx(_bce_of(mean, batch.label),
                                                                rel=1e-5)
    # the one ensemble loss reaches every sub-network and the shared embedding
    strategy.zero_grad(set_to_none=True)
    strategy.loss(batch)["loss"].backward()
    for sub in model.subnetworks:
        own = [p for name, p in sub.named_parameters() if not name.startswith("embedding.")]
        assert own and all(p.grad is not None and p.grad.abs().sum() > 0 for p in own)
    assert model.embedding.table.weight.grad.abs().sum() > 0
    # ... and couples them: moving sub-network 1 changes sub-network 0's gradient
    before = _subnet_grads(strategy, batch, 0)
    _perturb(model.subnetworks[1].mlp)
    after = _subnet_grads(strategy, batch, 0)
    assert not all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_kdef_independent_subnetworks_share_nothing():
    fm = make_feature_map()
    batch = make_batch(fm, 32)
    torch.manual_seed(0)
    model = KDEFModel.build(NO_DROPOUT, fm, 3, shared_embedding=False)
    strategy = KDEFStrategy(model, "independent")
    storages = [{p.data_ptr() for p in sub.parameters()} for sub in model.subnetworks]
    assert all(storages)
    for i in range(3):
        for j in range(i + 1, 3):
            assert not storages[i] & storages[j], (i, j)  # no tensor memory in common
    expected = sum(_bce_of(sub(batch), batch.label) for sub in model.subnetworks)
    assert float(strategy.loss(batch)["loss"].detach()) == pytest.approx(expected, rel=1e-5)
    # Sub-network 0's gradient does not depend on the others: perturb all of sub-network 1
    # (its embedding included) and it stays exactly the same, while sub-network 1's moves.
    before0, before1 = _subnet_grads(strategy, batch, 0), _subnet_grads(strategy, batch, 1)
    _perturb(model.subnetworks[1])
    after0, after1 = _subnet_grads(strategy, batch, 0), _subnet_grads(strategy, batch, 1)
    assert all(torch.equal(a, b) for a, b in zip(before0, after0, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(before1, after1, strict=True))
    assert all(g.abs().sum() > 0 for g in after0)


def test_independent_subnetworks_own_their_embeddings(tmp_path):
    fm = make_feature_map()
    batch = make_batch(fm, 32)
    torch.manual_seed(0)
    model = KDEFModel.build({"name": "dnn", "embedding_dim": 4, "hidden_units": [8]}, fm, 3,
                            shared_embedding=False)
    tables = [sub.embedding for sub in model.subnetworks]
    assert len({id(t) for t in tables}) == 3 and model.embedding is tables[0]
    strategy = KDEFStrategy(model, "independent")
    # sub-network 0's loss reaches its own embedding and no other sub-network's
    own = nn.functional.binary_cross_entropy_with_logits(model.subnetworks[0](batch),
                                                         batch.label)
    grads = torch.autograd.grad(own, [t.table.weight for t in tables], allow_unused=True)
    assert grads[0] is not None and grads[1] is None and grads[2] is None
    expected = sum(_bce_of(sub(batch), batch.label) for sub in model.subnetworks)
    assert float(strategy.loss(batch)["loss"].detach()) == pytest.approx(expected, rel=1e-5)
    # the checkpoint remembers the layout and rebuilds it
    save_checkpoint(tmp_path / "k.pt", model, fm)
    rebuilt, _ = load_checkpoint(tmp_path / "k.pt", fm)
    assert not rebuilt.config.shared_embedding
    assert len({id(s.embedding) for s in rebuilt.subnetworks}) == 3
    model.eval()
    assert torch.allclose(rebuilt(batch), model(batch))


def test_kdef_backbone_defaults_to_identical_dnns(tmp_path):
    from ctrdistill.config import validate_config
    from ctrdistill.pipelines.fit import KDEFConfig

    config = validate_config(KDEFConfig, {"name": "k", "data": str(tmp_path)})
    backbone = config.method.backbone
    assert backbone.name == "dnn" and backbone.hidden_units == [400, 400, 400]
    model = KDEFModel.build(backbone, make_feature_map(), 2)
    assert model.subnetworks[0].config == model.subnetworks[1].config == backbone


def _evaluated_every_time(run: Path, outputs: list[str]) -> list[dict]:
    """history.json of a run: every evaluation reports AUC and logloss of every output."""
    history = json.loads((run / "history.json").read_text())
    for record in history:
        for output in outputs:
            assert {f"{output}.auc", f"{output}.logloss"} <= set(record["valid"]), record["step"]
    return history


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("ens"), rows=6000, max_vocab=500,
                             chunk_rows=6000)


TINY = {"name": "dnn", "embedding_dim": 4, "hidden_units": [16]}
TRAIN = {"epochs": 1, "batch_size": 512, "progress": False, "eval_every_steps": 4}


def test_kdef_end_to_end(prepared, tmp_path):
    config = {"name": "k3", "data": str(prepared), "output_dir": str(tmp_path),
              "backbone": TINY, "num_subnetworks": 3, "train": TRAIN}
    path = tmp_path / "k3.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["kdef", str(path)]) == 0
    run = tmp_path / "k3"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"auc", "sub0.auc", "sub1.auc", "sub2.auc"} <= set(metrics["test"])
    rows = json.loads((run / "results.json").read_text())
    assert [r["model"] for r in rows] == ["k3 (served)", "k3/sub0", "k3/sub1", "k3/sub2"]
    assert (run / "curves.png").is_file() and (run / "checkpoint-sub2.pt").is_file()
    model, _ = load_checkpoint(run)
    assert isinstance(model, KDEFModel) and len(model.subnetworks) == 3
    # The saved ensemble reloads through the ordinary evaluate verb (registry knows it).
    assert main(["evaluate", str(run), "--data", str(prepared)]) == 0
    assert len(_evaluated_every_time(run, ["sub0", "sub1", "sub2"])) >= 2


def test_kdef_independent_end_to_end(prepared, tmp_path):
    config = {"name": "ind", "data": str(prepared), "output_dir": str(tmp_path),
              "backbone": TINY, "num_subnetworks": 2, "mode": "independent", "train": TRAIN}
    path = tmp_path / "ind.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["kdef", str(path)]) == 0
    run = tmp_path / "ind"
    _evaluated_every_time(run, ["sub0", "sub1"])
    model, _ = load_checkpoint(run)
    assert model.subnetworks[0].embedding is not model.subnetworks[1].embedding
    # a single sub-network is served with its own embedding
    assert main(["evaluate", str(run / "checkpoint-sub1.pt"), "--data", str(prepared)]) == 0
    # collapse analysis reports each sub-network's embedding tables separately
    out = tmp_path / "collapse"
    assert main(["analyze", "collapse", str(run), "--data", str(prepared), "--output", str(out),
                 "--sample-rows", "300"]) == 0
    report = json.loads((out / "collapse.json").read_text())[0]
    assert set(report["hidden"]) == {"sub0", "sub1"}
    owners = {k.split("/", 1)[1] for k in report["fields"]}
    assert {k for k in report["fields"] if k.startswith("emb0/")} and set(report["fields"]) == {
        f"emb{e}/{o}" for e in (0, 1) for o in owners}


def test_mutual_end_to_end_with_finetuned_peer(prepared, tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"name": "base", "data": str(prepared),
                                    "output_dir": str(tmp_path), "model": TINY, "train": TRAIN}))
    assert main(["train", str(base)]) == 0
    config = {"name": "dml", "data": str(prepared), "output_dir": str(tmp_path),
              "peers": [TINY], "peer_runs": [str(tmp_path / "base")], "distance": "kl",
              "warmup_steps": 2, "train": TRAIN}
    path = tmp_path / "dml.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["mutual", str(path)]) == 0
    assert "warning: peer run(s) base already trained on the training rows" in (
        capsys.readouterr().err)
    run = tmp_path / "dml"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"auc", "peer0.auc", "peer1.auc"} <= set(metrics["test"])
    assert (run / "checkpoint-peer1.pt").is_file() and (run / "results.md").is_file()
    _evaluated_every_time(run, ["peer0", "peer1"])
    assert main(["mutual", str(path), "--set", "peer_runs=[]", "--set", "name=x"]) == 2
    # peers own their embeddings: collapse analysis reports each peer's tables separately
    out = tmp_path / "collapse"
    assert main(["analyze", "collapse", str(run), "--data", str(prepared), "--output", str(out),
                 "--sample-rows", "300"]) == 0
    report = json.loads((out / "collapse.json").read_text())[0]
    assert set(report["hidden"]) == {"sub0", "sub1"}
    assert any(k.startswith("emb1/") for k in report["fields"])


def test_mutual_seen_rows_warning_compares_the_rows_not_the_path(prepared, tmp_path, capsys):
    """The seen-rows warning compares the training rows each peer trained on (their
    fingerprint) with those fine-tuned on: a copy of the same data warns, other rows do not."""
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"name": "base", "data": str(prepared),
                                    "output_dir": str(tmp_path), "model": TINY, "train": TRAIN}))
    assert main(["train", str(base)]) == 0
    copy = tmp_path / "copy"  # the same rows under another path
    shutil.copytree(prepared, copy)
    new_rows = tmp_path / "new-rows"  # same vocabularies, other rows (a later day's data)
    shutil.copytree(prepared, new_rows)
    for shard in (new_rows / "train").glob("*.parquet"):
        frame = pl.read_parquet(shard)
        frame.with_columns(pl.col("row_id") + 10**9).write_parquet(shard)
    for data, warns in ((copy, True), (new_rows, False)):
        config = {"name": f"dml-{data.name}", "data": str(data), "output_dir": str(tmp_path),
                  "peer_runs": [str(tmp_path / "base"), str(tmp_path / "base")], "train": TRAIN}
        path = tmp_path / "dml.yaml"
        path.write_text(yaml.safe_dump(config))
        capsys.readouterr()
        assert main(["mutual", str(path)]) == 0
        assert ("already trained on the training rows" in capsys.readouterr().err) is warns

"""Knowledge distillation: distances, ensembles/gating, gradient isolation, auxiliary heads,
early stopping on the distillation loss, and `ctrdistill distill` end to end."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score
from torch import nn

from conftest import labels_batch, prepare_synthetic
from ctrdistill.cli import main
from ctrdistill.data.batch import Batch
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.errors import CtrDistillError
from ctrdistill.models.base import ModelOutput
from ctrdistill.models.registry import build_model
from ctrdistill.pipelines.fit import distill
from ctrdistill.pipelines.methods.kd import fit_gate
from ctrdistill.strategies.ensemble import TeacherEnsemble, teacher_outputs
from ctrdistill.strategies.kd import AuxDistillStrategy, KDStrategy
from ctrdistill.strategies.losses import distill_distance
from ctrdistill.training.checkpoint import load_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.inference import score
from ctrdistill.training.trainer import Trainer

TINY = {"name": "dnn", "embedding_dim": 4, "hidden_units": [16]}


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _bce(p: float, q: float) -> float:
    return -(p * math.log(q) + (1 - p) * math.log(1 - q))


def test_distances_match_hand_computation():
    t, s = [1.0, -2.0], [0.5, 0.0]
    tt, st = torch.tensor(t), torch.tensor(s)
    mean = lambda f: sum(f(a, b) for a, b in zip(t, s, strict=True)) / 2  # noqa: E731
    temperature = 2.0
    soft = mean(lambda a, b: _bce(_sig(a / temperature), _sig(b / temperature)))
    cases = {
        ("bce", False): soft,
        ("bce", True): soft * temperature**2,
        ("mse_logits", True): mean(lambda a, b: (a - b) ** 2),
        ("mse_probs", True): mean(lambda a, b: (_sig(a) - _sig(b)) ** 2),
        ("kl", True): mean(lambda a, b: _bce(_sig(a), _sig(b)) - _bce(_sig(a), _sig(a))),
    }
    for (kind, scale), expected in cases.items():
        got = distill_distance(tt, st, kind, temperature if kind == "bce" else 1.0, scale)
        assert float(got) == pytest.approx(expected, rel=1e-5), kind
    # the teacher side is always detached
    teacher = torch.tensor(t, requires_grad=True)
    distill_distance(teacher, st.requires_grad_(), "kl").backward()
    assert teacher.grad is None


class FixedStudent(nn.Module):
    """A 'student' whose logits and hidden vectors are parameters: losses by hand."""

    def __init__(self, logits: list[float], hidden: list[list[float]]) -> None:
        super().__init__()
        self.z = nn.Parameter(torch.tensor(logits))
        self.h = nn.Parameter(torch.tensor(hidden))
        self.hidden_dim = self.h.shape[1]

    def encode(self, batch) -> ModelOutput:
        return ModelOutput(self.z, self.h)

    def forward(self, batch) -> torch.Tensor:
        return self.z


Y = [1.0, 0.0, 1.0]
Z_S = [0.4, -0.3, 1.2]
H_S = [[1.0, -0.5], [0.2, 0.3], [-1.0, 2.0]]
Z_T = [[1.0, 2.0], [-1.5, 0.5], [0.3, -0.8]]  # two teachers' logits per sample
W1, B1 = [[0.5, -0.25], [-0.75, 1.0]], [0.1, -0.2]  # the gate: softmax(W2 relu(W1 z + b1) + b2)
W2, B2 = [[1.0, -1.0], [0.5, 2.0]], [0.3, -0.1]


def _gate_weights(t: list[float]) -> list[float]:
    hidden = [max(0.0, sum(w * v for w, v in zip(row, t, strict=True)) + b)
              for row, b in zip(W1, B1, strict=True)]
    scores = [sum(w * v for w, v in zip(row, hidden, strict=True)) + b
              for row, b in zip(W2, B2, strict=True)]
    total = sum(math.exp(v) for v in scores)
    return [math.exp(v) / total for v in scores]


def _hand_batch() -> Batch:
    return labels_batch(torch.tensor(Y), teacher_logits=torch.tensor(Z_T))


def _hand_gate() -> TeacherEnsemble:
    ensemble = TeacherEnsemble("gate", 2, gate_inputs=("logits",), gate_hidden=2)
    with torch.no_grad():
        ensemble.gate[0].weight.copy_(torch.tensor(W1))
        ensemble.gate[0].bias.copy_(torch.tensor(B1))
        ensemble.gate[2].weight.copy_(torch.tensor(W2))
        ensemble.gate[2].bias.copy_(torch.tensor(B2))
    return ensemble


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def test_direct_kd_loss_matches_hand_computation():
    """BCE(y, p_s) + lambda * T^2 * soft-label BCE(z_E / T, z_s / T) + BCE(y, sigmoid(z_E)),
    z_E the gated ensemble."""
    lam, temperature = 0.5, 2.0
    strategy = KDStrategy(FixedStudent(Z_S, H_S), [], _hand_gate(), distance="bce",
                          temperature=temperature, weight=lam).train()
    terms = strategy.loss(_hand_batch())
    z_e = [sum(a * t for a, t in zip(_gate_weights(ts), ts, strict=True)) for ts in Z_T]
    hard = _mean(_bce(y, _sig(z)) for y, z in zip(Y, Z_S, strict=True))
    soft = temperature**2 * _mean(_bce(_sig(e / temperature), _sig(z / temperature))
                                  for e, z in zip(z_e, Z_S, strict=True))
    gate = _mean(_bce(y, _sig(e)) for y, e in zip(Y, z_e, strict=True))
    assert float(terms["bce"].detach()) == pytest.approx(hard, rel=1e-6)
    assert float(terms["distill"].detach()) == pytest.approx(soft, rel=1e-6)
    assert float(terms["gate"].detach()) == pytest.approx(gate, rel=1e-6)
    assert float(terms["loss"].detach()) == pytest.approx(hard + lam * soft + gate, rel=1e-6)


def test_aux_loss_matches_hand_computation():
    """BCE(y, p_main) + lambda * mean (p_E - p_aux)^2 + BCE(y, sigmoid(z_E)), with
    z_aux = w . h + b on the student's hidden vector."""
    lam, w, b = 0.7, [0.6, -0.4], 0.25
    strategy = AuxDistillStrategy(FixedStudent(Z_S, H_S), [], _hand_gate(),
                                  distance="mse_probs", weight=lam).train()
    with torch.no_grad():
        strategy.aux_head.weight.copy_(torch.tensor([w]))
        strategy.aux_head.bias.fill_(b)
    terms = strategy.loss(_hand_batch())
    z_e = [sum(a * t for a, t in zip(_gate_weights(ts), ts, strict=True)) for ts in Z_T]
    z_aux = [sum(u * v for u, v in zip(w, h, strict=True)) + b for h in H_S]
    hard = _mean(_bce(y, _sig(z)) for y, z in zip(Y, Z_S, strict=True))
    distill = _mean((_sig(e) - _sig(a)) ** 2 for e, a in zip(z_e, z_aux, strict=True))
    gate = _mean(_bce(y, _sig(e)) for y, e in zip(Y, z_e, strict=True))
    assert float(terms["bce"].detach()) == pytest.approx(hard, rel=1e-6)
    assert float(terms["distill"].detach()) == pytest.approx(distill, rel=1e-6)
    assert float(terms["gate"].detach()) == pytest.approx(gate, rel=1e-6)
    assert float(terms["loss"].detach()) == pytest.approx(hard + lam * distill + gate, rel=1e-6)
    served = strategy.predict(_hand_batch())["served"]
    assert torch.equal(served, torch.tensor(Z_S))  # the main head is served, not the aux one


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("kd"), rows=6000, max_vocab=500,
                             chunk_rows=6000)


@pytest.fixture(scope="module")
def data(prepared) -> PreparedData:
    return PreparedData(prepared)


def _strategy(data, kind="gate", aux=False, hint=0.0, teachers=2,
              gate_inputs=("embedding", "logits")):
    torch.manual_seed(0)
    fm = data.feature_map
    teacher_models = [build_model(TINY, fm) for _ in range(teachers)]
    ensemble = TeacherEnsemble(kind, teachers, fm, gate_inputs,
                               teacher_hidden_dim=sum(t.hidden_dim for t in teacher_models))
    student = build_model(TINY, fm)
    if aux:
        return AuxDistillStrategy(student, teacher_models, ensemble)
    return KDStrategy(student, teacher_models, ensemble, hint=hint)


def _params(module):
    return [p for p in module.parameters() if p.requires_grad]


def test_no_gradient_reaches_frozen_teachers(data):
    batch = data.load("valid").take(slice(0, 256))
    for strategy in (_strategy(data, hint=0.5), _strategy(data, aux=True)):
        strategy.train()
        strategy.loss(batch)["loss"].backward()
        for teacher in strategy.teachers:
            assert not teacher.training
            assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
        assert all(p.grad is not None for p in _params(strategy.student))
        assert all(p.grad is not None for p in _params(strategy.ensemble.gate))
        # frozen teachers are not part of the checkpointed state
        assert not any(k.startswith("teachers.") for k in strategy.trained_state())


def test_gate_and_student_gradients_are_isolated(data):
    strategy = _strategy(data)
    strategy.train()
    terms = strategy.loss(data.load("valid").take(slice(0, 256)))
    gate, student = _params(strategy.ensemble), _params(strategy.student)
    grads = torch.autograd.grad(terms["distill"], gate, allow_unused=True, retain_graph=True)
    assert all(g is None for g in grads)  # the student's distillation term cannot move the gate
    grads = torch.autograd.grad(terms["gate"], student, allow_unused=True)
    assert all(g is None for g in grads)  # the gate's fitting loss cannot move the student


@pytest.mark.parametrize("kind", ["mean_logits", "mean_probs", "weights", "gate"])
def test_ensemble_weights_sum_to_one(data, kind):
    strategy = _strategy(data, kind=kind, teachers=3)
    batch = data.load("valid").take(slice(0, 128))
    logits, _ = teacher_outputs(batch, strategy.teachers)
    z_e, weights = strategy.ensemble(logits, batch)
    assert weights.shape == (128, 3)
    assert torch.allclose(weights.sum(1), torch.ones(128), atol=1e-6)
    if kind == "mean_probs":
        assert torch.allclose(torch.sigmoid(z_e), torch.sigmoid(logits).mean(1), atol=1e-5)
    else:
        assert torch.allclose(z_e, (weights * logits).sum(1), atol=1e-5)
    strategy.train()
    strategy.loss(batch)
    logs = strategy.epoch_logs()
    assert sorted(logs) == ["teacher_weight.0", "teacher_weight.1", "teacher_weight.2"]
    assert sum(logs.values()) == pytest.approx(1.0, abs=1e-5)
    assert strategy.epoch_logs() == {}  # reset after each read


def test_cached_teacher_logits_are_used(data):
    strategy = _strategy(data, kind="mean_logits")
    batch = data.load("valid").take(slice(0, 64))
    live, _ = teacher_outputs(batch, strategy.teachers)
    batch.teacher_logits = live + 1.0
    cached, _ = teacher_outputs(batch, strategy.teachers)
    assert torch.allclose(cached, live + 1.0)
    # hidden vectors: cached ones when the batch carries them, else the teachers run live
    _, live_hidden = teacher_outputs(batch, strategy.teachers, hidden=True)
    assert live_hidden.shape == (64, 32)
    batch.teacher_hidden = live_hidden + 1.0
    logits, hidden = teacher_outputs(batch, [], hidden=True)
    assert torch.allclose(logits, live + 1.0) and torch.allclose(hidden, live_hidden + 1.0)
    with pytest.raises(ValueError, match="hidden"):
        teacher_outputs(labels_batch(batch.label, teacher_logits=live), [], hidden=True)


@pytest.mark.parametrize("inputs", [("hidden",), ("logits", "hidden"),
                                    ("embedding", "logits", "hidden")])
def test_gate_reads_teacher_hidden_vectors(data, inputs):
    strategy = _strategy(data, gate_inputs=inputs)
    assert strategy.needs_hidden
    width = strategy.ensemble.gate[0].in_features
    expected = 32 + (2 if "logits" in inputs else 0) + (
        strategy.ensemble.embedding.num_fields * 8 if "embedding" in inputs else 0)
    assert width == expected
    batch = data.load("valid").take(slice(0, 128))
    strategy.train()
    terms = strategy.loss(batch)
    terms["loss"].backward()
    assert all(p.grad is not None for p in _params(strategy.ensemble.gate))
    _, weights, hidden = strategy.ensemble_logit(batch)
    assert hidden.shape == (128, 32) and torch.allclose(weights.sum(1), torch.ones(128))
    # the weights depend on the hidden vectors: change them, the weights change
    logits, _ = teacher_outputs(batch, strategy.teachers)
    moved = strategy.ensemble.weights(logits, batch, hidden + 5.0)
    assert not torch.allclose(moved, weights)


def test_hint_from_stored_hidden_vectors(data):
    """A student with no live teachers learns the hint from stored hidden vectors."""
    torch.manual_seed(0)
    fm = data.feature_map
    ensemble = TeacherEnsemble("mean_logits", 1, fm)
    strategy = KDStrategy(build_model(TINY, fm), [], ensemble, hint=1.0, teacher_hidden_dim=6)
    batch = data.load("valid").take(slice(0, 64))
    batch.teacher_logits = torch.zeros(64, 1)
    batch.teacher_hidden = torch.ones(64, 6)
    strategy.eval()  # no dropout: the two forward passes below must agree
    with torch.no_grad():
        terms = strategy.loss(batch)
        expected = (1.0 - strategy.hint_map(strategy.student.encode(batch).hidden)).pow(2).sum(1)
    assert float(terms["hint"]) == pytest.approx(float(expected.mean()), rel=1e-5)
    with pytest.raises(ValueError, match="hidden"):
        KDStrategy(build_model(TINY, fm), [], ensemble, hint=1.0)


def test_gate_fitted_on_held_out_rows_is_frozen(data):
    strategy = _strategy(data)
    valid = data.load("valid")
    frame = pl.DataFrame({"row_id": valid.row_id.numpy(), "teacher_logits": torch.stack(
        [valid.label * 4 - 2, torch.zeros(len(valid))], 1).numpy()})  # teacher 0 is an oracle
    valid = valid.join(frame)
    losses = fit_gate(strategy.ensemble, valid, epochs=20)
    assert losses[-1] < losses[0]
    assert not strategy.ensemble.trainable
    strategy.train()
    terms = strategy.loss(valid.take(slice(0, 256)))
    assert "gate" not in terms
    assert strategy.epoch_logs()["teacher_weight.0"] > 0.5  # it learned to trust the oracle


def test_aux_head_is_not_served(data):
    strategy = _strategy(data, aux=True).eval()
    batch = data.load("valid").take(slice(0, 128))
    before = strategy.predict(batch)
    with torch.no_grad():
        strategy.aux_head.weight.add_(1.0)
        strategy.aux_head.bias.add_(1.0)
    after = strategy.predict(batch)
    assert torch.equal(before["served"], after["served"])
    assert not torch.allclose(before["aux"], after["aux"])
    assert torch.equal(strategy.served_model()(batch), after["served"])


def test_aux_distill_term_never_moves_the_main_head(data):
    strategy = _strategy(data, aux=True)
    strategy.train()
    terms = strategy.loss(data.load("valid").take(slice(0, 256)))
    head = list(strategy.student.head.parameters())
    grads = torch.autograd.grad(terms["distill"], head, allow_unused=True, retain_graph=True)
    assert all(g is None for g in grads)  # the served output layer never sees the teacher
    shared = list(strategy.student.mlp.parameters())
    grads = torch.autograd.grad(terms["distill"], shared, allow_unused=True, retain_graph=True)
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    # ... while the hard-label term trains the main head and never the aux head
    grads = torch.autograd.grad(terms["bce"], list(strategy.aux_head.parameters()),
                                allow_unused=True)
    assert all(g is None for g in grads)


def test_early_stop_on_distillation_loss(data):
    """All labels 1 and teacher logits -20: the student's logits rise every step, so the
    distillation loss on held-out rows worsens after the first evaluation."""
    def rows(split):
        cd = data.load(split)
        cd = replace(cd, label=torch.ones_like(cd.label))
        frame = pl.DataFrame({"row_id": cd.row_id.numpy(),
                              "teacher_logits": torch.full((len(cd), 1), -20.0).numpy()})
        return cd.join(frame)

    strategy = _strategy(data, kind="mean_logits", teachers=1)
    strategy.weight, strategy.distance = 0.0, "mse_logits"
    config = TrainConfig(epochs=1, batch_size=256, eval_every_steps=1, lr=0.01, progress=False,
                         early_stop={"monitor": "distill", "patience": 0})
    result = Trainer(strategy, config).fit(BatchLoader(rows("train"), 256, seed=0),
                                           rows("valid"))
    assert result.stopped_early and result.steps == 2
    assert result.best["step"] == 1
    assert result.history[1]["valid"]["distill"] > result.history[0]["valid"]["distill"]


def test_stop_on_distill_needs_early_stopping(prepared):
    from ctrdistill.config import validate_config
    from ctrdistill.errors import CtrDistillError
    from ctrdistill.pipelines.fit import DistillConfig

    base = {"name": "x", "data": str(prepared), "teachers": [{"model": {"name": "lr"}}]}
    off = {"early_stop": None, "lr_plateau": None}
    with pytest.raises(CtrDistillError, match=r"stop_on: distill needs train\.early_stop"):
        validate_config(DistillConfig, {**base, "stop_on": "distill", "train": off})
    # Not stopping at all stays valid when no signal was asked for.
    assert validate_config(DistillConfig, {**base, "train": off}).train.early_stop is None
    config = validate_config(DistillConfig, {**base, "stop_on": "distill"})
    assert config.train.early_stop.patience == 2


def test_distill_end_to_end(prepared, tmp_path):
    # A larger learning rate than BARS's: 6,000 rows give only a few dozen steps.
    train = {"epochs": 3, "batch_size": 256, "lr": 0.01, "progress": False, "threads": 1}
    config = {"name": "kd", "data": str(prepared), "output_dir": str(tmp_path),
              "teachers": [{"model": {**TINY, "hidden_units": [32]}, "name": "dnn32"},
                           {"model": {"name": "lr"}, "train": {"epochs": 1}}],
              "student": {**TINY, "hidden_units": [32]},
              "strategy": {"ensemble": "gate", "distance": "bce", "temperature": 2.0,
                           "lambda": 0.5},
              "stop_on": "distill", "add_valid_to_train": True,
              "train": {**train, "early_stop": {"patience": 1}}}
    path = tmp_path / "kd.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["distill", str(path)]) == 0
    run = tmp_path / "kd"
    rows = json.loads((run / "results.json").read_text())
    assert [r["model"] for r in rows] == ["teacher dnn32", "teacher teacher1-lr",
                                          "teacher ensemble", "student kd"]
    assert all({"params", "auc", "logloss", "calibration", "inference_samples_per_second"}
               <= set(r) for r in rows)
    assert rows[-1]["speedup"] == pytest.approx(  # timed beside its teachers, at the end
        rows[-1]["inference_samples_per_second"] / rows[2]["inference_samples_per_second"])
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["auc"] > 0.5 + 0.3 * (test["bayes_auc"] - 0.5)
    assert {"ensemble.auc", "distill"} <= set(test)
    history = json.loads((run / "history.json").read_text())
    assert "distill" in history[0]["valid"] and "teacher_weight.1" in history[0]
    assert (run / "curves.png").is_file() and (run / "results.md").is_file()
    assert (tmp_path / "kd-teachers" / "dnn32" / "checkpoint.pt").is_file()
    # Teachers are reused; aux distillation from a teacher run directory; a bad option is
    # one line and exit code 2.
    teacher_run = str(tmp_path / "kd-teachers" / "dnn32")
    assert main(["distill", str(path), "--set", "name=aux", "--set", "strategy.kind=aux",
                 "--set", "strategy.ensemble=weights", "--set", "strategy.gate_fit=valid",
                 "--set", f"teachers=[{{run: {teacher_run}}}]", "--set", "train.epochs=1",
                 "--set", "stop_on=valid_auc", "--set", "add_valid_to_train=false"]) == 0
    _check_aux_run(tmp_path / "aux", PreparedData(prepared))
    assert main(["distill", str(path), "--set", "name=x", "--set", "stop_on=valid_auc"]) == 2


def _check_aux_run(run: Path, data: PreparedData) -> None:
    """Aux distillation reports its aux head on the test split, recomputed here from the saved
    student and aux head, and serves (and lists as the student) the main head."""
    rows = json.loads((run / "results.json").read_text())
    assert [r["model"] for r in rows] == ["teacher dnn32", "teacher ensemble", "student aux",
                                          "student aux/aux"]
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert 0.0 <= test["aux.auc"] <= 1.0 and test["aux.auc"] != test["auc"]
    rows_test = data.load("test")
    labels = rows_test.label.numpy()
    student, _ = load_checkpoint(run, data.feature_map)
    state = torch.load(run / "strategy_state.pt", weights_only=True)
    student.eval()
    with torch.no_grad():
        hidden = student.encode(rows_test.take(slice(None))).hidden
        aux = (hidden @ state["aux_head.weight"].T + state["aux_head.bias"]).squeeze(-1)
    served = score(student, rows_test)
    assert roc_auc_score(labels, served) == pytest.approx(test["auc"], abs=1e-9)
    assert roc_auc_score(labels, aux.numpy()) == pytest.approx(test["aux.auc"], abs=1e-9)
    # the student's row is the main (served) head, the aux row the aux head
    assert rows[2]["auc"] == test["auc"] and rows[2]["params"] == student.num_parameters()
    assert rows[3]["auc"] == test["aux.auc"] and "params" not in rows[3]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_teachers_trained_by_distill_are_reused_and_a_changed_config_refused(
        prepared, tmp_path, caplog, monkeypatch):
    """A rerun of a distill whose student did not finish (here: interrupted) loads the teachers
    it trained instead of training them again, whatever the student; a teacher config that
    changed is refused rather than silently mixed with the old teacher."""
    kd_module = sys.modules["ctrdistill.pipelines.methods.kd"]
    train = {"epochs": 1, "batch_size": 512, "progress": False, "threads": 1}
    config = {"name": "kd", "data": str(prepared), "output_dir": str(tmp_path),
              "teachers": [{"model": TINY, "name": "dnn4"}], "student": TINY,
              "strategy": {"ensemble": "mean_logits"}, "train": train}

    def interrupted(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(kd_module, "kd_strategy", interrupted)  # after the teachers
        with pytest.raises(KeyboardInterrupt):
            distill(config)
    teacher = tmp_path / "kd-teachers" / "dnn4"
    checkpoint = teacher / "checkpoint.pt"
    assert checkpoint.is_file() and not (tmp_path / "kd").exists()
    before = (checkpoint.stat().st_mtime_ns, teacher.stat().st_ino, _sha256(checkpoint))

    caplog.set_level(logging.INFO, logger="ctrdistill")
    caplog.clear()  # only the rerun's records
    other_student = config | {"student": {**TINY, "hidden_units": [8]},
                              "strategy": {"ensemble": "mean_probs", "lambda": 0.5}}
    result = distill(other_student)
    assert (checkpoint.stat().st_mtime_ns, teacher.stat().st_ino, _sha256(checkpoint)) == before
    messages = [r.getMessage() for r in caplog.records]
    assert f"teacher dnn4: reusing {teacher}" in messages
    assert not any(m.startswith("run dnn4:") for m in messages)  # the writer never started it
    assert any(m.startswith("run kd:") for m in messages)  # ... but trained the student
    assert [r["model"] for r in result.rows] == ["teacher dnn4", "teacher ensemble",
                                                 "student kd"]

    changed = config | {"teachers": [{"model": TINY, "name": "dnn4", "train": {"lr": 0.01}}]}
    refusal = re.escape(f"{teacher} exists with another config (differs in: train.lr)")
    with pytest.raises(CtrDistillError, match=refusal):
        distill(changed)
    assert (checkpoint.stat().st_mtime_ns, teacher.stat().st_ino, _sha256(checkpoint)) == before


@pytest.mark.parametrize(("first", "second"), [
    ({"train": {"progress": True}}, {}),  # progress bars on, then off
    ({"overwrite": True}, {}),  # a run with overwrite: true, then a rerun without
])
def test_teacher_reuse_ignores_display_only_keys(prepared, tmp_path, first, second):
    train = {"epochs": 1, "batch_size": 512, "progress": False, "threads": 1}
    config = {"name": "kd", "data": str(prepared), "output_dir": str(tmp_path),
              "teachers": [{"model": {"name": "lr"}, "name": "lr"}], "student": TINY,
              "strategy": {"ensemble": "mean_logits"}, "train": train}

    def variant(change: dict) -> dict:
        return config | change | {"train": train | change.get("train", {})}

    distill(variant(first))
    shutil.rmtree(tmp_path / "kd")  # the student is gone (e.g. it was interrupted)
    checkpoint = tmp_path / "kd-teachers" / "lr" / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    distill(variant(second))
    assert checkpoint.stat().st_mtime_ns == before

"""One run, many methods: a method registered from outside the package, tied parameters that stay
tied in every saved state, config errors before any work, and inputs checked before training."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import pytest
import torch
import torch.nn.functional as F
import yaml
from pydantic import Field

import ctrdistill as cd
from conftest import prepare_synthetic
from ctrdistill.cli import main
from ctrdistill.errors import CtrDistillError
from ctrdistill.pipelines.common import resolve
from ctrdistill.rundir import RunDirectory

TRAIN = {"epochs": 1, "batch_size": 512, "progress": False, "threads": 1, "early_stop": None,
         "lr_plateau": None}
TINY = {"name": "dnn", "embedding_dim": 4, "hidden_units": [16]}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("runs"), rows=6000, max_vocab=200,
                             chunk_rows=3000, seed=3)


class SmoothedStrategy(cd.Strategy):
    """A toy objective written against the public API: BCE on labels smoothed towards 0.5."""

    name = "smoothed"

    def __init__(self, model, smoothing: float) -> None:
        super().__init__()
        self.model, self.smoothing = model, smoothing

    def loss(self, batch):
        target = batch.label * (1 - self.smoothing) + 0.5 * self.smoothing
        loss = F.binary_cross_entropy_with_logits(self.model(batch), target)
        return {"loss": loss, "bce": loss.detach()}

    def predict(self, batch):
        return {"served": self.model(batch)}

    def served_model(self):
        return self.model


@cd.register_method
class SmoothedMethod(cd.MethodConfig):
    kind: Literal["smoothed"] = "smoothed"
    model: dict = Field(default_factory=lambda: {"name": "dnn"})
    smoothing: float = 0.1

    def build(self, run, data):
        return cd.MethodBuild(SmoothedStrategy(cd.build_model(self.model, data.feature_map),
                                               self.smoothing))


def test_a_method_registered_from_outside_runs_through_the_one_path(prepared, tmp_path):
    config = {"name": "toy", "data": str(prepared), "output_dir": str(tmp_path), "train": TRAIN,
              "method": {"kind": "smoothed", "model": TINY, "smoothing": 0.2}}
    result = cd.run(config)
    run = RunDirectory(result.path)
    assert run.method() == {"kind": "smoothed", "model": TINY, "smoothing": 0.2}
    assert 0.5 < run.metrics()["test"]["auc"] <= 1
    assert [row["model"] for row in run.results()] == ["toy"]
    assert cd.load_run(result.path).evaluate(prepared)["auc"] == pytest.approx(
        run.metrics()["test"]["auc"], abs=1e-6)
    # Its keys are validated like a built-in method's, with the nearest key suggested.
    with pytest.raises(CtrDistillError, match=r"unknown key 'method\.smoothin'; did you mean "
                       r"'smoothing'\?"):
        cd.run({**config, "method": {"kind": "smoothed", "smoothin": 0.2}})


def test_a_verb_refuses_another_method_and_an_unknown_kind_lists_the_registered(prepared,
                                                                                 tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({"name": "toy", "data": str(prepared), "output_dir":
                                    str(tmp_path), "method": {"kind": "smoothed"}}))
    with pytest.raises(CtrDistillError, match="this verb runs method 'plain', the config's "
                       "method is 'smoothed'"):
        cd.train(path)
    with pytest.raises(CtrDistillError, match=r"unknown method kind 'nope' \(registered: kd, "
                       r"kdef, mutual, plain, smoothed\)"):
        cd.run({"name": "x", "data": str(prepared), "method": {"kind": "nope"}})


def test_flat_and_nested_spellings_are_one_config(prepared):
    flat = cd.TrainRunConfig(name="dnn", data=prepared, model=TINY)
    nested = cd.RunConfig(name="dnn", data=prepared, method={"kind": "plain", "model": TINY})
    assert flat.model_dump() == nested.model_dump()
    with pytest.raises(CtrDistillError, match=r"unknown key 'modle'; did you mean 'model'"):
        cd.train({"name": "dnn", "data": str(prepared), "modle": TINY})


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/b", ".."])
def test_a_run_name_cannot_escape_output_dir(prepared, tmp_path, name):
    with pytest.raises(CtrDistillError, match="is not a plain name"):
        cd.train({"name": name, "data": str(prepared), "output_dir": str(tmp_path),
                  "model": TINY})


def _parameter_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())  # each once


def test_tied_parameters_stay_tied_in_every_saved_state(prepared, tmp_path, monkeypatch):
    """A 4-sub-network KDEF run shares one embedding table: its trained state, the strategy
    state file and the resume state hold it once, not once per sub-network."""
    config = {"name": "kdef4", "data": str(prepared), "output_dir": str(tmp_path),
              "backbone": {"name": "dnn", "embedding_dim": 16, "hidden_units": [8]},
              "num_subnetworks": 4, "train": {**TRAIN, "max_steps": 2}}
    result = cd.kdef(config)
    run = RunDirectory(result.path)
    strategy_bytes = run.strategy_state.stat().st_size
    checkpoint_bytes = run.checkpoint().stat().st_size
    assert strategy_bytes < 1.2 * checkpoint_bytes  # it was 4.2x with five copies of the table
    state = torch.load(run.strategy_state, weights_only=True)
    tables = [v for k, v in state.items() if k.endswith("table.weight")]
    assert len(tables) > 1 and all(t.data_ptr() == tables[0].data_ptr() for t in tables)
    assert list(run.checkpoints()) == ["served", "sub0", "sub1", "sub2", "sub3"]

    # The resume state holds the table once in each of its two snapshots (current and best),
    # beside Adam's two moments of every parameter: 4x the parameters (12x with the copies).
    saved = {}
    from ctrdistill.training import trainer as trainer_module

    original = trainer_module.Trainer.state_dict

    def keep(self, at, fit):
        state = original(self, at, fit)
        saved["resume"] = state
        saved["params"] = _parameter_bytes(self.strategy)
        return state

    monkeypatch.setattr(trainer_module.Trainer, "state_dict", keep)
    cd.kdef(config, name="again")
    path = tmp_path / "resume.pt"
    torch.save(saved["resume"], path)
    assert path.stat().st_size < 4.4 * saved["params"]


def test_stop_on_and_a_monitor_that_contradicts_it_is_an_error(prepared):
    base = {"name": "kd", "data": str(prepared), "teachers": [{"model": {"name": "lr"}}]}
    with pytest.raises(CtrDistillError, match=r"stop_on: distill contradicts "
                       r"train\.early_stop\.monitor: auc"):
        resolve(cd.DistillConfig, {**base, "stop_on": "distill",
                                   "train": {"early_stop": {"monitor": "auc"}}})
    derived = resolve(cd.DistillConfig, {**base, "stop_on": "distill"})
    assert derived.train.early_stop.monitor == "distill"
    implied = resolve(cd.DistillConfig, {**base, "train": {"early_stop": {"monitor":
                                                                          "distill"}}})
    assert implied.train.early_stop.monitor == "distill"
    assert resolve(cd.DistillConfig, base).train.early_stop.monitor == "auc"


def test_a_dataset_without_its_vocabularies_fails_before_training(prepared, tmp_path):
    broken = tmp_path / "prep"
    shutil.copytree(prepared, broken)
    shutil.rmtree(broken / "vocab")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"name": "dnn", "data": str(broken), "output_dir":
                                      str(tmp_path / "runs"), "model": TINY, "train": TRAIN}))
    assert main(["train", str(config)]) == 2
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

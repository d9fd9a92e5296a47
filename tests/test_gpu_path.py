"""What a GPU run needs that a CPU run does not show: fused optimizers only where torch has the
kernel, no collective or host read per training step, one GPU per torchrun process, buffers
that follow their module, page-locked batches from a page-locked split (issue 31)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from conftest import make_batch, make_feature_map
from ctrdistill.data.dataset import ColumnData
from ctrdistill.errors import CtrDistillError
from ctrdistill.models import build_model
from ctrdistill.strategies import PlainStrategy
from ctrdistill.strategies.ensemble import TeacherEnsemble
from ctrdistill.training import distributed
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.device import resolve_device
from ctrdistill.training.trainer import Trainer, fused_kernel, sparse_step_unless_non_finite


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "adagrad"])
def test_fused_optimizers_only_where_torch_has_the_kernel(optimizer, feature_map):
    assert fused_kernel(optimizer, torch.device("cpu")) is True
    assert fused_kernel(optimizer, torch.device("meta")) is None  # no fused kernel there
    model = build_model({"name": "dnn", "embedding_dim": 4}, feature_map)
    trainer = Trainer(PlainStrategy(model), TrainConfig(optimizer=optimizer, progress=False))
    assert trainer.optimizers[0].param_groups[0]["fused"] is True


@pytest.fixture
def one_rank_group(monkeypatch):
    """A gloo group of one process, joined here, that the trainer takes for a DDP group."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    monkeypatch.setattr(distributed, "group",
                        lambda device: distributed.Group(0, 1, 0, "gloo"))
    yield
    dist.destroy_process_group()


def test_a_ddp_step_runs_no_collective_of_its_own(one_rank_group, monkeypatch, feature_map):
    # Every rank knows the global batch size: weighting the ranks' rows needs no all-reduce
    # (DDP's own gradient reduction runs in its C++ reducer, not through this function).
    calls = []
    all_reduce = dist.all_reduce
    monkeypatch.setattr(dist, "all_reduce", lambda *a, **k: calls.append(1) or all_reduce(*a, **k))
    model = build_model({"name": "dnn", "embedding_dim": 4}, feature_map)
    trainer = Trainer(PlainStrategy(model), TrainConfig(progress=False))
    assert isinstance(trainer.forward, torch.nn.parallel.DistributedDataParallel)
    batch = make_batch(feature_map, 32)
    for _ in range(3):
        trainer.train_step(batch, 32)
    assert calls == []


def test_an_explicit_gpu_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(CtrDistillError, match="every process on the same GPU"):
        resolve_device("cuda:0")


def test_ensemble_weight_sums_follow_the_module_and_stay_out_of_checkpoints():
    ensemble = TeacherEnsemble("weights", 3).to("meta")
    assert ensemble._weight_sum.device == torch.device("meta")
    ensemble.record(torch.full((4, 3), 1 / 3, device="meta"))  # no copy to the host
    assert "_weight_sum" not in TeacherEnsemble("weights", 3).state_dict()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_a_shuffled_batch_of_a_pinned_split_is_pinned():
    batch = make_batch(make_feature_map(), 64)
    rows = ColumnData(make_feature_map(), batch.cat, batch.num, batch.seq, batch.label,
                      batch.row_id).pin_memory()
    taken = rows.take(torch.randperm(64)[:16])
    assert taken.cat.is_pinned() and taken.label.is_pinned()


def test_fp16_with_sparse_embeddings_reads_nothing_to_the_host(monkeypatch, feature_map):
    model = build_model({"name": "dnn", "embedding_dim": 4}, feature_map)
    trainer = Trainer(PlainStrategy(model), TrainConfig(precision="fp16", sparse_embedding=True,
                                                        progress=False))
    batch = make_batch(feature_map, 32)
    trainer.train_step(batch)  # the optimizers' state exists from here on

    def no_item(self):
        raise AssertionError("a host read in a training step")

    monkeypatch.setattr(torch.Tensor, "item", no_item)
    table = trainer.embeddings[0].table.weight
    before = table.detach().clone()
    trainer.train_step(batch)
    assert not torch.equal(table, before)


def test_a_non_finite_sparse_gradient_skips_the_step_of_its_rows():
    table = torch.nn.Embedding(10, 3, sparse=True)
    optimizer = torch.optim.SparseAdam(table.parameters())
    for poison in (False, True):
        table(torch.tensor([1, 4])).sum().backward()
        if poison:
            grad = table.weight.grad.coalesce()
            table.weight.grad = torch.sparse_coo_tensor(grad.indices(),
                                                        grad.values() * float("inf"), (10, 3),
                                                        check_invariants=True)
        before = (table.weight.detach().clone(),
                  *[t.clone() for t in optimizer.state[table.weight].values()
                    if torch.is_tensor(t) and t.dim()])
        sparse_step_unless_non_finite(optimizer)
        after = (table.weight.detach(), *[t for t in optimizer.state[table.weight].values()
                                          if torch.is_tensor(t) and t.dim()])
        changed = not torch.equal(after[0], before[0])
        assert changed != poison  # a finite step moves rows 1 and 4; a poisoned one nothing
        if poison:
            assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
        optimizer.zero_grad()

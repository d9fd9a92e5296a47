"""Collapse metrics on matrices with known spectra, and `analyze collapse` on tiny runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from ctrdistill.analysis.collapse import effective_rank, information_abundance, singular_values
from ctrdistill.cli import main
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.synthetic import SynthConfig, write_synthetic


def test_identity_is_uncollapsed():
    s = singular_values(torch.eye(5))
    assert information_abundance(s) == pytest.approx(5.0)
    assert effective_rank(s) == pytest.approx(5.0)


def test_rank_one_is_fully_collapsed():
    m = torch.outer(torch.tensor([1.0, 2.0, -3.0, 0.5]), torch.tensor([0.2, 1.0, 4.0]))
    s = singular_values(m)
    assert information_abundance(s) == pytest.approx(1.0, abs=1e-9)
    assert effective_rank(s) == pytest.approx(1.0, abs=1e-6)


def test_known_singular_values():
    values = [4.0, 2.0, 1.0, 1.0]
    # A rotation does not change singular values.
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)))
    m = q[:, :4] @ torch.diag(torch.tensor(values))
    s = singular_values(m)
    assert s.tolist() == pytest.approx(values, rel=1e-6)
    assert information_abundance(s) == pytest.approx(8 / 4)
    probs = [v / 8 for v in values]
    assert effective_rank(s) == pytest.approx(math.exp(-sum(p * math.log(p) for p in probs)))


def test_zero_matrix_is_defined():
    s = singular_values(torch.zeros(3, 3))
    assert information_abundance(s) == 0.0 and effective_rank(s) == 0.0


def test_analyze_collapse_cli(tmp_path):
    raw, prep = tmp_path / "raw", tmp_path / "prep"
    write_synthetic(SynthConfig(rows=6000, max_vocab=500, chunk_rows=6000), raw,
                    show_progress=False)
    prepare(PrepareConfig(recipe="synthetic", input=raw, output=prep, protocol="x4"),
            show_progress=False)
    runs = []
    for n in (1, 2):
        config = {"name": f"naive{n}", "data": str(prep), "output_dir": str(tmp_path),
                  "backbone": {"name": "dnn", "embedding_dim": 4, "hidden_units": [16]},
                  "num_subnetworks": n, "mode": "naive",
                  "train": {"epochs": 1, "batch_size": 512, "progress": False}}
        path = tmp_path / f"naive{n}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert main(["kdef", str(path)]) == 0
        runs.append(str(tmp_path / f"naive{n}"))
    out = tmp_path / "collapse"
    assert main(["analyze", "collapse", *runs, "--data", str(prep), "--output", str(out),
                 "--sample-rows", "500"]) == 0
    reports = json.loads((out / "collapse.json").read_text())
    assert [r["num_subnetworks"] for r in reports] == [1, 2]
    assert [r["series"] for r in reports] == ["naive", "naive"]  # the ensemble mode
    assert set(reports[1]["hidden"]) == {"sub0", "sub1"}
    field = next(iter(reports[0]["fields"].values()))
    assert 1.0 <= field["information_abundance"] <= 4.0  # at most embedding_dim
    assert (out / "abundance.png").is_file() and (out / "spectra-naive2.png").is_file()

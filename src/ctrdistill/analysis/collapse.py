"""Dimensional collapse (Guo et al. 2023, used by KDEF): singular-value spectra of each field's
embedding table and of each sub-network's hidden representation, summarised by information
abundance IA = sum s / max s and effective rank exp(-sum q ln q), q = s / sum s."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ctrdistill.analysis.plots import save_figure, whole_number_ticks
from ctrdistill.data.dataset import PreparedData
from ctrdistill.models.base import CTRModel
from ctrdistill.models.ensembles import MeanEnsemble
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.rundir import RunDirectory
from ctrdistill.storage import atomic_file
from ctrdistill.training.checkpoint import load_checkpoint


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Descending singular values, in float64 so tiny tails are not lost."""
    return torch.linalg.svdvals(matrix.detach().double())


def information_abundance(s: torch.Tensor) -> float:
    top = float(s.max()) if s.numel() else 0.0
    return float(s.sum()) / top if top > 0 else 0.0


def effective_rank(s: torch.Tensor) -> float:
    total = float(s.sum())
    if total <= 0:
        return 0.0
    q = s / total
    q = q[q > 0]  # 0 ln 0 = 0
    return math.exp(float(-(q * q.log()).sum()))


def spectrum(matrix: torch.Tensor) -> dict[str, Any]:
    s = singular_values(matrix)
    return {"information_abundance": information_abundance(s), "effective_rank": effective_rank(s),
            "singular_values": s.tolist()}


def ensemble_parts(model: CTRModel) -> list[CTRModel]:
    """The sub-networks (KDEF) or peers (mutual) of an ensemble; a plain model is its own part."""
    return list(model.members) if isinstance(model, MeanEnsemble) else [model]


def collapse_report(run_dir: Path, data: PreparedData | Path, sample_rows: int = 4096,
                    split: str = "test", device: torch.device | str = "cpu") -> dict[str, Any]:
    """Spectra of every field's embedding table (per distinct embedding) and every part's hidden
    representation over the first `sample_rows` rows of `split`."""
    data = data if isinstance(data, PreparedData) else PreparedData(data)
    model, feature_map = load_checkpoint(Path(run_dir), data.feature_map)
    model = model.to(device)
    parts = ensemble_parts(model)
    embeddings: list[FeatureEmbedding] = []
    for part in parts:  # KDEF parts share one (not in mode independent); mutual peers own theirs
        if all(part.embedding is not e for e in embeddings):
            embeddings.append(part.embedding)
    fields: dict[str, Any] = {}
    for e_index, embedding in enumerate(embeddings):
        for field in feature_map.categorical + feature_map.sequence:
            owner = field.vocab or field.name
            key = owner if len(embeddings) == 1 else f"emb{e_index}/{owner}"
            if key not in fields:
                fields[key] = spectrum(embedding.field_table(owner, field.vocab_size))
    rows = data.load(split)
    batch = rows.take(slice(0, min(sample_rows, len(rows)))).to(device)
    with torch.no_grad():
        hidden = {f"sub{k}": spectrum(part.encode(batch).hidden) for k, part in enumerate(parts)}
    method = RunDirectory(run_dir).method()
    return {
        "run": str(run_dir), "model": model.config.name,
        # Runs are compared across N within a series: the ensemble mode (kdef, naive, ...)
        "series": method.get("mode") or model.config.name,
        "num_subnetworks": len(parts),
        "sample_rows": len(batch), "fields": fields, "hidden": hidden,
        "mean_field_abundance": _mean(fields, "information_abundance"),
        "mean_field_effective_rank": _mean(fields, "effective_rank"),
        "mean_hidden_abundance": _mean(hidden, "information_abundance"),
        "mean_hidden_effective_rank": _mean(hidden, "effective_rank"),
    }


def _mean(spectra: dict[str, Any], key: str) -> float:
    values = [v[key] for v in spectra.values()]
    return sum(values) / len(values) if values else float("nan")


#: Singular values below this fraction of the largest are float32 rounding noise, not signal.
NOISE_FLOOR = float(np.finfo(np.float32).eps)
#: Up to this many spectra per panel get a legend entry each; more are summarised.
MAX_LABELLED = 10


def normalised_spectrum(values: list[float]) -> np.ndarray:
    """s / max s, cut where it falls below machine precision (NOISE_FLOOR)."""
    s = np.asarray(values, dtype=np.float64)
    if not s.size or s[0] <= 0:
        return s[:0]
    s = s / s[0]
    return s[s >= NOISE_FLOOR]


def spectra_figure(report: dict[str, Any]) -> Figure:
    """Normalised singular values of field tables and hidden representations. A panel with up
    to MAX_LABELLED spectra labels each line; with more, every spectrum is a thin grey line
    under the median and the 10-90% band across spectra at each index."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, group in zip(axes, ("fields", "hidden"), strict=True):
        spectra = {name: normalised_spectrum(spec["singular_values"])
                   for name, spec in report[group].items()}
        spectra = {name: s for name, s in spectra.items() if s.size}
        labelled = len(spectra) <= MAX_LABELLED
        for name, s in spectra.items():
            index = np.arange(1, len(s) + 1)
            if labelled:
                ax.plot(index, s, label=name, linewidth=1)
            else:
                ax.plot(index, s, color="grey", alpha=0.35, linewidth=0.6)
        if spectra and not labelled:
            length = max(len(s) for s in spectra.values())
            padded = np.full((len(spectra), length), np.nan)
            for row, s in enumerate(spectra.values()):
                padded[row, :len(s)] = s
            index = np.arange(1, length + 1)
            low, mid, high = np.nanquantile(padded, [0.1, 0.5, 0.9], axis=0)
            ax.fill_between(index, low, high, color="C0", alpha=0.3,
                            label=f"10-90% of {len(spectra)} {group}")
            ax.plot(index, mid, color="C0", linewidth=2, label=f"median of {len(spectra)}")
            ax.plot([], [], color="grey", alpha=0.6, linewidth=0.6, label="each spectrum")
        ax.set_yscale("log")
        whole_number_ticks(ax, [i for s in spectra.values() for i in range(1, len(s) + 1)])
        ax.set_xlabel("index")
        ax.set_ylabel(f"s / max s (cut at {NOISE_FLOOR:.1e})")
        ax.set_title(f"{Path(report['run']).name}: {group}")
        ax.grid(alpha=0.3)
        if spectra:
            ax.legend(fontsize=7)
    return fig


def plot_spectra(report: dict[str, Any], path: Path) -> Path:
    return save_figure(spectra_figure(report), path)


def abundance_figure(reports: list[dict[str, Any]]) -> Figure:
    """Mean information abundance against the number of sub-networks: one point per run, one
    colour per series (ensemble mode), a line through each series' mean at every N. The y-axis
    starts at 1, the smallest possible abundance, so gaps are drawn to scale."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    series = sorted({r["series"] for r in reports})
    for ax, key, title in ((axes[0], "mean_field_abundance", "embedding tables"),
                           (axes[1], "mean_hidden_abundance", "hidden representations")):
        for index, name in enumerate(series):
            points = [(r["num_subnetworks"], r[key]) for r in reports if r["series"] == name]
            colour = f"C{index % 10}"
            ax.scatter(*zip(*points, strict=True), color=colour, alpha=0.6, label=name)
            sizes = sorted({n for n, _ in points})
            means = [statistics.mean(v for n, v in points if n == size) for size in sizes]
            ax.plot(sizes, means, color=colour)
        top = max((r[key] for r in reports), default=1.0)
        ax.set_ylim(1.0, 1.0 + 1.1 * max(top - 1.0, 0.1))
        ax.set_xticks(sorted({r["num_subnetworks"] for r in reports}))
        ax.set_xlabel("number of sub-networks N")
        ax.set_ylabel("mean information abundance (min 1)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def plot_abundance(reports: list[dict[str, Any]], path: Path) -> Path:
    return save_figure(abundance_figure(reports), path)


def analyze_collapse(run_dirs: list[Path], data: Path, output: Path, sample_rows: int = 4096,
                     device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """Write collapse.json, spectra-<run>.png per run and abundance.png (vs N) under `output`."""
    prepared = PreparedData(data)
    output.mkdir(parents=True, exist_ok=True)
    reports = [collapse_report(Path(r), prepared, sample_rows, device=device) for r in run_dirs]
    for report in reports:
        plot_spectra(report, output / f"spectra-{Path(report['run']).name}.png")
    plot_abundance(reports, output / "abundance.png")
    with atomic_file(output / "collapse.json") as tmp:
        tmp.write_text(json.dumps(reports, indent=1))
    return reports

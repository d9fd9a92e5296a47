"""A run directory: the one place that names the files of a run and reads and writes them.

A run is `output_dir/NAME/` with its resolved config, metrics history, final metrics, the data it
trained on, checkpoints, the strategy's trained state, a results table, a summary, learning
curves and the fitted preprocessing. It is built in a hidden partial sibling (which also holds
the resume state) and appears whole when the run has finished (`RunDirectory.build`); nothing
rewrites a finished run. Checkpoint formats are the training layer's: this object gives their
paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ctrdistill.files import RESTART, RETRAIN, load_torch, read_json, read_yaml
from ctrdistill.storage import RESUME_STATE, atomic_directory, atomic_file, partial_directory

SERVED = "served"


def plain(value: Any) -> Any:
    """JSON/YAML-safe values (paths become strings)."""
    return json.loads(json.dumps(value, default=str))


class RunDirectory:
    """The files of one run (finished, or the partial directory being built)."""

    CONFIG = "config.yaml"
    HISTORY = "history.json"
    METRICS = "metrics.json"
    DATA = "data.json"  # which prepared data the run trained on (path, training-rows fingerprint)
    SUMMARY = "summary.md"
    CURVES = "curves.png"
    RESULTS = "results"  # results.json and results.md: the run's results table
    STRATEGY_STATE = "strategy_state.pt"
    CHECKPOINT = "checkpoint.pt"
    RESUME = RESUME_STATE
    #: What a tracking server keeps of a run besides its parameters and metrics.
    ARTIFACTS = (CURVES, SUMMARY, "checkpoint*.pt")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # --- paths ----------------------------------------------------------------------------
    def checkpoint(self, output: str = SERVED) -> Path:
        """The servable checkpoint of `output` (the served model by default)."""
        return self.path / (self.CHECKPOINT if output == SERVED else f"checkpoint-{output}.pt")

    def checkpoints(self) -> dict[str, Path]:
        """Every saved checkpoint by output: the served one, then each member's (peer0, peer1,
        ... of mutual; sub0, ... of KDEF) in order."""
        members = {p.name.removeprefix("checkpoint-").removesuffix(".pt"): p
                   for p in self.path.glob("checkpoint-*.pt")}
        order = sorted(members, key=lambda name: (name.rstrip("0123456789"),
                                                  int(name[len(name.rstrip("0123456789")):] or 0)))
        return {SERVED: self.checkpoint(), **{name: members[name] for name in order}}

    @property
    def curves(self) -> Path:
        return self.path / self.CURVES

    @property
    def resume_state(self) -> Path:
        return self.path / self.RESUME

    @property
    def strategy_state(self) -> Path:
        return self.path / self.STRATEGY_STATE

    @property
    def partial(self) -> RunDirectory:
        """Where the run is built (and its resume state kept) until it has finished."""
        return RunDirectory(partial_directory(self.path))

    def is_finished(self) -> bool:
        return (self.path / self.METRICS).is_file()

    # --- reading --------------------------------------------------------------------------
    def _read(self, name: str, default: Any) -> Any:
        file = self.path / name
        if not file.is_file():
            return default
        return (read_yaml if name.endswith(".yaml") else read_json)(file, RETRAIN)

    def config(self) -> dict[str, Any]:
        """The resolved config the run was trained with ({} for a bare checkpoint)."""
        return self._read(self.CONFIG, {}) or {}

    def method(self) -> dict[str, Any]:
        """The config of the run's method (plain, kd, mutual, kdef, ...)."""
        return self.config().get("method") or {}

    def metrics(self) -> dict[str, Any]:
        """Per-split metrics, parameters, speeds ({} for a bare checkpoint)."""
        return self._read(self.METRICS, {})

    def history(self) -> list[dict[str, Any]]:
        return self._read(self.HISTORY, [])

    def results(self) -> list[dict[str, Any]]:
        return self._read(f"{self.RESULTS}.json", [])

    def trained_on(self) -> str | None:
        """The training-rows fingerprint of the data the run trained on (None: unknown)."""
        return self._read(self.DATA, {}).get("train_fingerprint")

    # --- writing (into a partial directory) -------------------------------------------------
    def _write(self, name: str, text: str) -> None:
        with atomic_file(self.path / name) as tmp:
            tmp.write_text(text)

    def write_config(self, config: dict[str, Any]) -> None:
        self._write(self.CONFIG, yaml.safe_dump(plain(config), sort_keys=False))

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        self._write(self.METRICS, json.dumps(metrics, indent=1))

    def write_history(self, history: list[dict[str, Any]]) -> None:
        self._write(self.HISTORY, json.dumps(history, indent=1))

    def write_data(self, path: Path, train_fingerprint: str) -> None:
        self._write(self.DATA, json.dumps({"path": str(Path(path).resolve()),
                                           "train_fingerprint": train_fingerprint}, indent=1))

    def write_summary(self, text: str) -> None:
        self._write(self.SUMMARY, text)

    def write_results(self, rows: list[dict[str, Any]], markdown: str) -> None:
        self._write(f"{self.RESULTS}.json", json.dumps(rows, indent=1))
        self._write(f"{self.RESULTS}.md", markdown)

    def save_state(self, file: Path, state: dict[str, Any]) -> None:
        """A torch state (the resume state, the strategy's trained state), written atomically."""
        import torch  # only runs that train have states: reading a run needs no torch

        with atomic_file(file) as tmp:
            torch.save(state, tmp)

    def load_resume_state(self) -> dict[str, Any]:
        return load_torch(self.resume_state, RESTART)

    @classmethod
    @contextmanager
    def build(cls, target: Path, overwrite: bool = False, resume: bool = False
              ) -> Iterator[RunDirectory]:
        """Yield the partial directory of `target` to fill; it becomes `target` on success (see
        `storage.atomic_directory`: a failure removes it unless it holds a resume state)."""
        with atomic_directory(target, overwrite=overwrite, resume=resume) as tmp:
            yield cls(tmp)

"""Declarative description of a raw CTR table, and the fitted feature map written by `prepare`.

Encoding conventions (shared by every prepared dataset):
- categorical ids: 0 is padding (sequences only), 1 is out-of-vocabulary (unseen or rarer than
  `min_count`), 2.. are the vocabulary sorted by descending training count; with
  `oov_buckets` K (`follow`'s `vocabulary.oov: hash`), K rows after the vocabulary take the
  values it lacks instead of 1, by MurmurHash3 of the value (ctrdistill.data.hashing);
- a missing categorical value becomes the empty-string token, counted like any other value;
- a missing continuous numeric value becomes the field's `fill` (default 0) before its transform;
  NaN, ±inf and values beyond float32's range count as missing (and are reported by `prepare`);
- `standardize` subtracts the mean and divides by the std of the training values present
  (missing ones left out; a constant column gets std 1);
- a bucketised numeric becomes categorical: floor(ln(x)^2) for x > 2, else int(x), missing -> "".
"""

from __future__ import annotations

import hashlib
import json
from itertools import zip_longest
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ctrdistill.config import StrictConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.files import PREPARE, read_model

PAD_ID = 0
OOV_ID = 1
FIRST_ID = 2
# Here rather than in dataset.py so that `prepare` names the splits without importing torch.
SPLITS = ("train", "valid", "test")

FieldKind = Literal["categorical", "numeric", "sequence"]
NumericTransform = Literal["none", "log1p", "bucketize", "standardize"]


class FieldSpec(StrictConfig):
    """One input field of the raw table."""

    name: str = Field(description="the field's name in the prepared data")
    kind: FieldKind = Field("categorical", description="categorical ids, a numeric value, or a "
                            "multi-valued sequence of ids")
    source: str | None = Field(None, description="raw column name; defaults to `name`")
    transform: NumericTransform = Field(
        "none", description="numeric fields: none, log1p, bucketize (ids floor(ln(x)^2) for "
        "x > 2, else floor(x)) or standardize (by the training split's mean and deviation)")
    min_count: int | None = Field(None, ge=1, description="overrides the schema's min_count")
    share_vocab_with: str | None = Field(None, description="use this other field's vocabulary "
                                         "(and embedding table)")
    separator: str = Field("|", description="sequence fields: what separates the ids")
    max_length: int = Field(20, ge=1, description="sequence fields: ids kept per row (the rest "
                            "are cut)")
    fill: float = Field(0.0, description="numeric fields: the value a missing number takes")

    @property
    def column(self) -> str:
        return self.source or self.name

    @property
    def encoded_kind(self) -> FieldKind:
        """Bucketised numerics are categorical once encoded."""
        if self.kind == "numeric" and self.transform == "bucketize":
            return "categorical"
        return self.kind

    @model_validator(mode="after")
    def _check(self) -> FieldSpec:
        if self.kind != "numeric" and self.transform != "none":
            raise ValueError(f"field '{self.name}': transform applies only to numeric fields")
        return self


class Schema(StrictConfig):
    """Which raw columns are the label, the features, the group (for gAUC) and the day."""

    label: str = Field("label", description="raw column of the 0/1 label")
    fields: list[FieldSpec] = Field(description="the input fields")
    min_count: int = Field(1, ge=1, description="ids seen fewer times in training become "
                           "out-of-vocabulary")
    group: str | None = Field(None, description="raw column grouping rows for gAUC (e.g. user)")
    day: str | None = Field(None, description="raw column of the day number (day splits, "
                            "streams)")
    passthrough: list[str] = Field(
        default_factory=list, description="raw float columns carried into the prepared data"
    )

    @model_validator(mode="after")
    def _check(self) -> Schema:
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate field names: {duplicates}")
        if not self.fields:
            raise ValueError("a schema needs at least one field")
        by_name = {f.name: f for f in self.fields}
        for f in self.fields:
            target = f.share_vocab_with
            if target is None:
                continue
            if target not in by_name:
                raise ValueError(f"field '{f.name}' shares vocabulary with unknown '{target}'")
            if by_name[target].share_vocab_with is not None:
                raise ValueError(f"field '{f.name}': '{target}' must own its vocabulary")
            if f.encoded_kind == "numeric" or by_name[target].encoded_kind == "numeric":
                raise ValueError(f"field '{f.name}': only id fields can share a vocabulary")
        return self

    def min_count_of(self, spec: FieldSpec) -> int:
        return spec.min_count or self.min_count

    def raw_columns(self) -> list[str]:
        cols = [self.label, *(f.column for f in self.fields), *self.passthrough]
        cols += [c for c in (self.group, self.day) if c]
        return list(dict.fromkeys(cols))


class EncodedField(StrictConfig):
    """A field as the models see it after preparation."""

    name: str
    kind: FieldKind
    vocab_size: int = Field(0, description="ids 0..vocab_size-1, padding and OOV included")
    vocab: str | None = Field(None, description="owner of the vocabulary (itself unless shared)")
    max_length: int = 0
    transform: NumericTransform = "none"
    mean: float = 0.0
    std: float = 1.0


class FeatureMap(StrictConfig):
    """What `prepare` fitted: encoded fields, split sizes, and the dataset's identity."""

    format_version: int = 1
    label: str = "label"
    fields: list[EncodedField]
    splits: dict[str, int] = Field(default_factory=dict, description="rows per split")
    has_group: bool = False
    has_day: bool = False
    passthrough: list[str] = Field(default_factory=list)
    source: dict[str, str] = Field(default_factory=dict)
    vocab_digests: dict[str, str] = Field(
        default_factory=dict, description="a digest of each vocabulary's value -> id map, by "
        "owner, so a vocabulary re-fitted to the same size still changes the fingerprint")
    oov_buckets: int = Field(
        0, ge=0, description="hashed OOV rows after each vocabulary: a value it lacks gets row "
        "len(vocabulary) + 2 + MurmurHash3(value) % oov_buckets (0: the one OOV row, id 1)")

    def of_kind(self, kind: FieldKind) -> list[EncodedField]:
        return [f for f in self.fields if f.kind == kind]

    @property
    def categorical(self) -> list[EncodedField]:
        return self.of_kind("categorical")

    @property
    def numeric(self) -> list[EncodedField]:
        return self.of_kind("numeric")

    @property
    def sequence(self) -> list[EncodedField]:
        return self.of_kind("sequence")

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def fingerprint(self) -> str:
        """Hash of what a model depends on: field names, kinds, vocabularies and transforms."""
        payload: Any = [f.model_dump() for f in self.fields]
        if self.vocab_digests:  # absent from older feature maps: their fingerprints stay valid
            payload = {"fields": payload, "vocabularies": self.vocab_digests}
        if self.oov_buckets:  # likewise: only feature maps with hashed buckets include them
            payload = {"fields": payload, "vocabularies": self.vocab_digests,
                       "oov_buckets": self.oov_buckets}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def difference(self, trained_on: FeatureMap) -> str:
        """The first thing that differs from the feature map a model was `trained_on`."""
        pairs = zip_longest([f.name for f in self.fields], [f.name for f in trained_on.fields])
        for index, (here, there) in enumerate(pairs):
            if here != there:
                return (f"field {index + 1} is {repr(here) if here else 'absent'} here, "
                        f"{repr(there) if there else 'absent'} in the checkpoint")
        if self.oov_buckets != trained_on.oov_buckets:
            return (f"{self.oov_buckets} hashed OOV bucket(s) here, {trained_on.oov_buckets} in "
                    "the checkpoint")
        for mine, theirs in zip(self.fields, trained_on.fields, strict=True):
            for key, value in mine.model_dump().items():
                if value != getattr(theirs, key):
                    return (f"field '{mine.name}': {key} {value} here, {getattr(theirs, key)} in "
                            "the checkpoint")
        for owner in sorted(self.vocab_digests.keys() | trained_on.vocab_digests.keys()):
            if self.vocab_digests.get(owner) != trained_on.vocab_digests.get(owner):
                for name, side in (("the prepared dataset", self), ("the checkpoint", trained_on)):
                    if owner not in side.vocab_digests:
                        return (f"vocabulary '{owner}': {name} predates vocabulary digests, so "
                                "its contents cannot be checked")
                return f"vocabulary '{owner}' maps values to other ids (same size, refitted)"
        return f"fingerprint {self.fingerprint()} vs {trained_on.fingerprint()}"

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2))

    @classmethod
    def load(cls, path: Path, remedy: str = PREPARE) -> FeatureMap:
        """`remedy`: what rebuilds a damaged file (it depends on what holds it)."""
        if not path.is_file():
            raise CtrDistillError(f"not a prepared dataset: {path} is missing")
        return read_model(cls, path, remedy)


FEATURE_MAP_FILE = "feature_map.json"

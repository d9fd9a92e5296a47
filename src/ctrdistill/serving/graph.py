"""The bundle's preprocessing as ONNX: raw values in, the model's input blocks out.

Built at export time with the `onnx` helper API from a dataset's fitted state, so one graph
does what `ctrdistill.data.encode.Encoder` does with Polars, and a server in any language (or
NVIDIA Triton) needs only onnxruntime:

- one input per raw column, shape (batch, 1): text (`tensor(string)`) for ids, sequences and
  Avazu's `hour`; `tensor(double)` for numbers, where NaN is a missing value;
- ids: the ONNX-ML `LabelEncoder` of each vocabulary, everything unseen or rare to OOV; the
  empty string is the missing token, as prepare's `fill_null("")`, and so are the spellings
  of null that the text readers of delimited recipes read as missing (NA, NULL, ...);
- numbers: NaN, ±inf and beyond float32's range take the field's fill, then log1p (of the value
  clipped at 0) or standardize, in double like Polars, cast to float32 at the end;
- bucketised numbers: floor(ln(x)^2) for x > 2, else floor(x), looked up as integers; missing
  (and below Int64's range) -> the missing token's id;
- sequences: `StringSplit` on the separator, empty tokens dropped, the first `max_length` ids
  kept, padded with 0;
- Avazu-x4's time fields from `hour` (YYMMDDHH): hour of day, weekday (Monday 0) from the
  civil-calendar day count, is_weekend; YY 00-69 is 20YY, 70-99 19YY, as Polars parses it.

This module imports `onnx` (the export extra); serving needs only onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import polars as pl
from onnx import TensorProto, helper, numpy_helper

from ctrdistill.data.encode import BLOCKS, FLOAT32_MAX, MISSING_TOKEN, PrepareState
from ctrdistill.data.formats import AVAZU_TIME_FIELDS
from ctrdistill.data.hashing import murmurhash3
from ctrdistill.data.recipes import ParquetRecipe, get_recipe
from ctrdistill.data.schema import FIRST_ID, OOV_ID, PAD_ID, EncodedField, FieldSpec
from ctrdistill.data.sources import NULL_VALUES

ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 2
MS_DOMAIN = "com.microsoft"  # onnxruntime's contrib ops: MurmurHash3 for hashed OOV buckets
MS_OPSET = 1
HOUR_COLUMN = "hour"  # Avazu's raw YYMMDDHH, from which x4 derives its time fields
INT64_MIN = -float(2**63)
_NO_KEY = "\x00"  # a vocabulary without values still needs one key: it never matches
_SEP = "\x1f"  # after a vocabulary's number in the keys of the joint lookup
_UNSEEN = -1  # the lookup's default where unseen values are hashed


@dataclass(frozen=True)
class Hashed:
    """Hashed OOV buckets: `buckets` rows from `first` (a number, or one per column)."""

    buckets: int
    first: int | list[list[int]]


@dataclass(frozen=True)
class RawInput:
    """One raw column the graph takes: its ONNX element type and the fields it feeds."""

    name: str
    dtype: str  # "string" or "double"
    fields: list[str]
    format: str | None = None  # "YYMMDDHH" for Avazu's hour


def derives_time(state: PrepareState) -> bool:
    columns = {f.column for f in state.schema.fields}
    return state.state.recipe == "avazu" and bool(columns & set(AVAZU_TIME_FIELDS))


def raw_inputs(state: PrepareState) -> list[RawInput]:
    """The graph's inputs in schema order (one per raw column)."""
    inputs: dict[str, RawInput] = {}
    time = derives_time(state)
    for spec in state.schema.fields:
        name = spec.column
        if time and name in AVAZU_TIME_FIELDS:
            name = HOUR_COLUMN
        dtype = "double" if spec.kind == "numeric" else "string"
        known = inputs.get(name)
        fields = [*(known.fields if known else []), spec.name]
        inputs[name] = RawInput(name, dtype, fields,
                                "YYMMDDHH" if time and name == HOUR_COLUMN else None)
    return list(inputs.values())


@dataclass
class _Graph:
    """Nodes and constants under construction, with unique names."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    constants: list[onnx.TensorProto] = field(default_factory=list)
    count: int = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"pre/{hint}/{self.count}"

    def const(self, value: Any, dtype: Any, hint: str = "c") -> str:
        name = self.name(hint)
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, domain: str = "", outputs: int = 1,
           **attrs: Any) -> Any:
        names = [self.name(op_type) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, domain=domain, **attrs))
        return names[0] if outputs == 1 else names

    def lookup(self, tokens: str, vocab: dict[str, int], hashed: Hashed | None = None,
               text: str | None = None) -> str:
        """Ids of text `tokens`: OOV if not a key of `vocab`, or with `hashed` buckets, the
        bucket of the unprefixed `text` (the tokens themselves unless given)."""
        keys = vocab or {_NO_KEY: OOV_ID}
        ids = self.op("LabelEncoder", tokens, domain=ML_DOMAIN, keys_strings=list(keys),
                      values_int64s=list(keys.values()),
                      default_int64=OOV_ID if hashed is None else _UNSEEN)
        if hashed is None:
            return ids
        hashes = self.op("MurmurHash3", text or tokens, domain=MS_DOMAIN, positive=1, seed=0)
        bucket = self.op("Add", self.op("Mod", self.op("Cast", hashes, to=TensorProto.INT64),
                                        self.const(hashed.buckets, np.int64)),
                         self.const(hashed.first, np.int64))
        return self.op("Where", self.op("Equal", ids, self.const(_UNSEEN, np.int64)), bucket,
                       ids)


def _missing(g: _Graph, x: str) -> str:
    """NaN, ±inf and values beyond float32's range: prepare's missing numbers."""
    return g.op("Or", g.op("IsNaN", x), g.op("Greater", g.op("Abs", x),
                                              g.const(FLOAT32_MAX, np.float64)))


def _numeric(g: _Graph, x: str, specs: list[FieldSpec], fields: list[EncodedField]) -> str:
    """(B, N) double -> the numeric block, every column at once with per-column constants."""
    row = (1, len(specs))
    x = g.op("Where", _missing(g, x), g.const(np.reshape([s.fill for s in specs], row),
                                              np.float64), x)
    log1p = [s.transform == "log1p" for s in specs]
    if any(log1p):
        logs = g.op("Log", g.op("Add", g.op("Max", x, g.const(0.0, np.float64)),
                                g.const(1.0, np.float64)))
        x = g.op("Where", g.const(np.reshape(log1p, row), bool), logs, x)
    if any(s.transform == "standardize" for s in specs):  # (x - 0) / 1 leaves the others
        x = g.op("Div", g.op("Sub", x, g.const(np.reshape([f.mean for f in fields], row),
                                                np.float64)),
                 g.const(np.reshape([f.std for f in fields], row), np.float64))
    return g.op("Cast", x, to=TensorProto.FLOAT)


def _bucket_tokens(g: _Graph, x: str) -> str:
    """(B, K) double -> the bucket of each value as text, "" where missing (and below Int64's
    range, which has no bucket)."""
    missing = g.op("Or", _missing(g, x), g.op("Less", x, g.const(INT64_MIN, np.float64)))
    safe = g.op("Where", missing, g.const(0.0, np.float64), x)
    log = g.op("Log", g.op("Max", safe, g.const(1.0, np.float64)))  # only used where x > 2
    bucket = g.op("Floor", g.op("Where", g.op("Greater", safe, g.const(2.0, np.float64)),
                                g.op("Mul", log, log), safe))
    text = g.op("Cast", g.op("Cast", bucket, to=TensorProto.INT64), to=TensorProto.STRING)
    return g.op("Where", missing, g.const(np.array([MISSING_TOKEN]), object), text)


def _sequence(g: _Graph, text: str, spec: FieldSpec, vocab: dict[str, int], length: int,
              hashed: Hashed | None) -> str:
    """(B, 1) text -> (B, 1, length) ids: split, empty tokens dropped, cut, padded."""
    tokens = g.op("StringSplit", text, delimiter=spec.separator, outputs=2)[0]  # (B, 1, W)
    present = g.op("Not", g.op("Equal", tokens, g.const(np.array([MISSING_TOKEN]), object)))
    ids = g.op("Where", present, g.lookup(tokens, vocab, hashed),
               g.const(PAD_ID, np.int64))
    # move present tokens to the front in their order: sort by (present, -position)
    width = g.op("Gather", g.op("Shape", tokens), g.const([2], np.int64))
    position = g.op("Range", g.const(0, np.int64), g.op("Squeeze", width),
                    g.const(1, np.int64))
    key = g.op("Sub", g.op("Mul", g.op("Cast", present, to=TensorProto.INT64), width), position)
    order = g.op("TopK", key, width, axis=-1, largest=1, sorted=1, outputs=2)[1]
    front = g.op("GatherElements", ids, order, axis=-1)
    padded = g.op("Concat", front, g.op("ConstantOfShape", g.op(
        "Concat", g.op("Slice", g.op("Shape", tokens), g.const([0], np.int64),
                       g.const([2], np.int64)), g.const([length], np.int64), axis=0),
        value=numpy_helper.from_array(np.array([PAD_ID], dtype=np.int64))), axis=-1)
    return g.op("Slice", padded, g.const([0], np.int64), g.const([length], np.int64),
                g.const([-1], np.int64))


def _avazu_time(g: _Graph, hour: str) -> dict[str, str]:
    """int64 (B, 1) hour_of_day, weekday (Monday 0) and is_weekend of YYMMDDHH text."""
    stamp = g.op("Cast", hour, to=TensorProto.INT64)

    def part(divisor: int, modulo: int) -> str:
        return g.op("Mod", g.op("Div", stamp, g.const(divisor, np.int64)),
                    g.const(modulo, np.int64))

    hh, dd, mm, yy = part(1, 100), part(100, 100), part(10_000, 100), part(1_000_000, 100)
    year = g.op("Add", yy, g.op("Where", g.op("Less", yy, g.const(70, np.int64)),
                                g.const(2000, np.int64), g.const(1900, np.int64)))
    # days since 1970-01-01 (H. Hinnant's days_from_civil; years here are all positive)
    march = g.op("Less", mm, g.const(3, np.int64))
    y = g.op("Sub", year, g.op("Cast", march, to=TensorProto.INT64))
    era = g.op("Div", y, g.const(400, np.int64))
    yoe = g.op("Sub", y, g.op("Mul", era, g.const(400, np.int64)))
    mp = g.op("Add", mm, g.op("Where", march, g.const(9, np.int64), g.const(-3, np.int64)))
    doy = g.op("Add", g.op("Div", g.op("Add", g.op("Mul", mp, g.const(153, np.int64)),
                                       g.const(2, np.int64)), g.const(5, np.int64)),
               g.op("Sub", dd, g.const(1, np.int64)))
    doe = g.op("Add", g.op("Sub", g.op("Add", g.op("Mul", yoe, g.const(365, np.int64)),
                                       g.op("Div", yoe, g.const(4, np.int64))),
                           g.op("Div", yoe, g.const(100, np.int64))), doy)
    days = g.op("Sub", g.op("Add", g.op("Mul", era, g.const(146097, np.int64)), doe),
                g.const(719468, np.int64))
    weekday = g.op("Mod", g.op("Add", days, g.const(3, np.int64)), g.const(7, np.int64))
    weekend = g.op("Cast", g.op("GreaterOrEqual", weekday, g.const(5, np.int64)),
                   to=TensorProto.INT64)
    return dict(zip(AVAZU_TIME_FIELDS, (hh, weekday, weekend), strict=True))


def null_spellings(vocab: dict[str, int], missing: int = OOV_ID) -> dict[str, int]:
    """The null spellings' id: the missing token's (`missing` if the vocabulary lacks it)."""
    return dict.fromkeys(NULL_VALUES, vocab.get(MISSING_TOKEN, missing))


def _first_bucket(state: PrepareState, owner: str) -> int:
    return FIRST_ID + len(state.encoder.vocabularies[owner])


def _hashed(state: PrepareState, owner: str) -> Hashed | None:
    """The hashed buckets of vocabulary `owner` (None without them)."""
    buckets = state.feature_map.oov_buckets
    return Hashed(buckets, _first_bucket(state, owner)) if buckets else None


def _vocabularies(state: PrepareState) -> dict[str, dict[str, int]]:
    return {owner: dict(zip(v["value"].to_list(), v["id"].to_list(), strict=True))
            for owner, v in state.encoder.vocabularies.items()}


def _categorical(g: _Graph, state: PrepareState, vocabularies: dict[str, dict[str, int]],
                 source: dict[str, str], derived: dict[str, str]) -> str:
    """The categorical block (B, C) in one lookup: each field's token as text (bucketised
    numerics and derived fields turned into text as prepare's casts do), prefixed by its
    vocabulary's number, looked up in the union of the vocabularies."""
    fields = state.feature_map.categorical
    specs = {s.name: s for s in state.schema.fields}
    bucketised = [f for f in fields if specs[f.name].kind == "numeric"]
    tokens: dict[str, str] = {}
    if bucketised:
        x = g.op("Concat", *(source[f.name] for f in bucketised), axis=1)
        text = _bucket_tokens(g, x)
        parts = (g.op("Split", text, axis=1, num_outputs=len(bucketised),
                      outputs=len(bucketised)) if len(bucketised) > 1 else [text])
        tokens.update(zip([f.name for f in bucketised], parts, strict=True))
    for f in fields:
        column = specs[f.name].column
        if f.name not in tokens:
            tokens[f.name] = (g.op("Cast", derived[column], to=TensorProto.STRING)
                              if column in derived else source[f.name])
    owners = sorted({f.vocab or f.name for f in fields})
    number = {owner: index for index, owner in enumerate(owners)}
    # a recipe reading delimited text reads these spellings as missing: so does the graph
    text_nulls = not isinstance(get_recipe(state.state.recipe), ParquetRecipe)
    keys: dict[str, int] = {}
    for owner in owners:
        vocab = vocabularies.get(owner, {})
        bucketed = _hashed(state, owner)
        missing = (OOV_ID if bucketed is None else  # the missing token's bucket
                   bucketed.first + int(murmurhash3(pl.Series([MISSING_TOKEN]))[0])
                   % bucketed.buckets)
        merged = {**(null_spellings(vocab, missing) if text_nulls else {}), **vocab}
        keys.update({f"{number[owner]}{_SEP}{value}": id_ for value, id_ in merged.items()})
    prefixes = np.array([[f"{number[f.vocab or f.name]}{_SEP}" for f in fields]], dtype=object)
    joined = g.op("Concat", *(tokens[f.name] for f in fields), axis=1)
    prefixed = g.op("StringConcat", g.const(prefixes, object), joined)
    buckets = state.feature_map.oov_buckets
    if not buckets:
        return g.lookup(prefixed, keys)
    first = [[_first_bucket(state, f.vocab or f.name) for f in fields]]  # per column
    return g.lookup(prefixed, keys, Hashed(buckets, first), joined)


def preprocessing_model(state: PrepareState, opset: int, ir_version: int | None = None,
                        prefix: str = "") -> onnx.ModelProto:
    """Raw inputs -> the blocks `categorical` (B, C) int64, `numeric` (B, N) float32 and
    `sequence` (B, S, L) int64 (named with `prefix`), each present when the feature map has
    fields of its kind."""
    g = _Graph()
    vocabularies = _vocabularies(state)
    specs = {s.name: s for s in state.schema.fields}
    inputs = raw_inputs(state)
    source = {f: i.name for i in inputs for f in i.fields}
    derived = (_avazu_time(g, HOUR_COLUMN) if any(i.format for i in inputs) else {})
    fm = state.feature_map
    blocks: dict[str, list[str]] = {kind: [] for kind in BLOCKS}
    if fm.numeric:
        x = g.op("Concat", *(source[f.name] for f in fm.numeric), axis=1)
        blocks["numeric"] = [_numeric(g, x, [specs[f.name] for f in fm.numeric], fm.numeric)]
    if fm.categorical:
        blocks["categorical"] = [_categorical(g, state, vocabularies, source, derived)]
    for seq in fm.sequence:
        blocks["sequence"].append(_sequence(g, source[seq.name], specs[seq.name],
                                            vocabularies.get(seq.vocab or seq.name, {}),
                                            seq.max_length, _hashed(state, seq.vocab or seq.name)))
    outputs = []
    for kind, parts in blocks.items():
        if parts:
            g.nodes.append(helper.make_node("Concat", parts, [prefix + kind], axis=1))
            dtype = TensorProto.FLOAT if kind == "numeric" else TensorProto.INT64
            shape: list[Any] = ["batch", len(fm.of_kind(kind))] + (  # type: ignore[arg-type]
                [fm.sequence[0].max_length] if kind == "sequence" else [])
            outputs.append(helper.make_tensor_value_info(prefix + kind, dtype, shape))
    graph = helper.make_graph(
        g.nodes, "ctrdistill_preprocessing",
        [helper.make_tensor_value_info(
            i.name, TensorProto.STRING if i.dtype == "string" else TensorProto.DOUBLE,
            ["batch", 1]) for i in inputs],
        outputs, initializer=g.constants)
    domains = [("", opset), (ML_DOMAIN, ML_OPSET)]
    if fm.oov_buckets:
        domains.append((MS_DOMAIN, MS_OPSET))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(*d) for d in domains])
    if ir_version is not None:
        model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    return model


def raw_model(state: PrepareState, model: onnx.ModelProto) -> onnx.ModelProto:
    """The preprocessing graph feeding `model` (the exported ids-in graph): raw -> outputs."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    pre = preprocessing_model(state, opset, model.ir_version, prefix="pre/")
    for entry in model.opset_import:  # the model's other domains (none of them ai.onnx.ml)
        if entry.domain not in ("", "ai.onnx", *(o.domain for o in pre.opset_import)):
            pre.opset_import.append(entry)
    return onnx.compose.merge_models(
        pre, model, io_map=[(f"pre/{i.name}", i.name) for i in model.graph.input])

"""A scoring request checked against the bundle's inputs, and turned into the graph's feeds.

The body is `{"rows": [{column: value, ...}, ...], "logits": false}` (`rows` may be one
object). One pydantic validator, built once per bundle from its manifest, parses the JSON and
checks it in one pass (pydantic-core): ids are text or integers, numbers are numbers, null is
missing; unknown or missing fields, wrong types and too many rows are refused with the row and
the field named. Avazu's raw `hour` must be a real YYMMDDHH time, as prepare demands.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Annotated, Any

import numpy as np
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from typing_extensions import NotRequired, TypedDict

Text = StrictStr | StrictInt | None
Number = StrictFloat | StrictInt | None


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _hour(value: str | int) -> str:
    """A YYMMDDHH time (YY 00-69 is 20YY, 70-99 19YY, as prepare parses it)."""
    text = str(value)
    if len(text) != 8 or not text.isascii() or not text.isdigit() or int(text[6:]) > 23:
        raise ValueError("must be a YYMMDDHH time")
    year = int(text[:2])
    try:
        date(year + (2000 if year < 70 else 1900), int(text[2:4]), int(text[4:6]))
    except ValueError:
        raise ValueError("must be a YYMMDDHH time") from None
    return text


def _one_row_as_list(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


class RequestSchema:
    """The validator of a bundle's requests, and the conversion of valid rows into feeds."""

    def __init__(self, inputs: list[dict[str, Any]], max_rows: int) -> None:
        self.inputs = inputs
        self.max_rows = max_rows
        self.numeric = {i["name"] for i in inputs if i["dtype"] == "double"}
        kinds = {i["name"]: (Number if i["dtype"] == "double" else
                             Annotated[StrictStr | StrictInt, AfterValidator(_hour)]
                             if i.get("format") == "YYMMDDHH" else Text) for i in inputs}
        row = TypedDict("Row", kinds)  # type: ignore[misc]
        row.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        rows = Annotated[list[row], BeforeValidator(_one_row_as_list),  # type: ignore[valid-type]
                         Field(min_length=1, max_length=max_rows)]
        fields = {"rows": rows, "logits": NotRequired[StrictBool]}
        body = TypedDict("Body", fields)  # type: ignore[misc]
        body.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        self.adapter = TypeAdapter(body)

    def parse(self, body: bytes) -> tuple[list[dict[str, Any]], bool]:
        """(rows, whether logits are wanted) of a JSON body, or BadRequest."""
        try:
            payload = self.adapter.validate_json(body)
        except ValidationError as error:
            raise self._bad(error) from None
        return payload["rows"], payload.get("logits", False)

    def feeds_of(self, body: bytes) -> tuple[dict[str, np.ndarray], bool]:
        """(the graph's feeds, whether logits are wanted) of a JSON body, or BadRequest."""
        rows, logits = self.parse(body)
        return self.feeds(rows), logits

    def _bad(self, error: ValidationError) -> BadRequest:
        first = error.errors(include_url=False)[0]
        kind, loc = first["type"], first["loc"]
        if kind == "json_invalid":
            return BadRequest(400, f"the body is not valid JSON ({first['msg']})")
        if len(loc) < 1 or loc[0] not in ("rows", "logits"):
            if kind == "extra_forbidden":
                return BadRequest(422, f"unknown key '{loc[0]}' (valid: rows, logits)")
            return BadRequest(422, 'the body must be a JSON object with "rows": a list of rows '
                              "(objects of raw feature values) or one row")
        if loc[0] == "logits":
            return BadRequest(422, '"logits" must be true or false')
        if kind == "too_long":
            return BadRequest(400, f"too many rows: {len(first['input'])} (at most "
                              f"{self.max_rows} per request)")
        if len(loc) < 2:
            return BadRequest(422, '"rows" must be a non-empty list of objects, or one object')
        row = f"row {loc[1]}"
        if len(loc) < 3:
            return BadRequest(422, f"{row}: not an object of field values")
        column = str(loc[2])
        if kind == "missing":
            return BadRequest(422, f"{row}: missing field '{column}'")
        if kind == "extra_forbidden":
            valid = ", ".join(i["name"] for i in self.inputs)
            return BadRequest(422, f"{row}: unknown field '{column}' (valid: {valid})")
        wanted = ("a number" if column in self.numeric else "text or an integer id")
        if first.get("ctx", {}).get("error"):  # the hour's own check
            return BadRequest(422, f"{row}: field '{column}' {first['ctx']['error']}")
        return BadRequest(422, f"{row}: field '{column}' must be {wanted} or null, not "
                          f"{_json_type(first['input'])}")

    def feeds(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """The graph's inputs of valid rows: text as object arrays (null -> "", ids -> their
        text), numbers as float64 (null -> NaN, beyond float64 -> inf: both missing)."""
        out = {}
        for spec in self.inputs:
            name = spec["name"]
            values = [row[name] for row in rows]
            if name in self.numeric:
                try:
                    array = np.array(values, dtype=np.float64)
                except OverflowError:  # an integer beyond float64: as 1e400, infinite
                    array = np.array([_float(v) for v in values], dtype=np.float64)
            else:
                array = np.array(["" if v is None else v if type(v) is str else str(v)
                                  for v in values], dtype=object)
            out[name] = array.reshape(-1, 1)
        return out


def _float(value: float | int | None) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.copysign(math.inf, value)


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", dict: "an object", list: "a list", str: "text", int: "an integer",
             float: "a number"}
    return names.get(type(value), type(value).__name__)

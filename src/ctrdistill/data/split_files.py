"""Pre-split inputs: a directory whose files are the train, valid and test splits (Frappe's
`frappe.train.libfm`/`frappe.validation.libfm`/`frappe.test.libfm`, BARS' `train.csv`/
`valid.csv`/`test.csv`, RecBole's `ml-1m.train.inter`/`ml-1m.valid.inter`/`ml-1m.test.inter`)
keeps that split instead of being pooled and split again at random. The files are the recipe's
data files (`Recipe.data_files`), each read on its own.

A file names a split by a word of its name (words are runs of letters): train or training;
valid, validation, val or dev; test or testing. A name with none, or with two different ones,
names no split.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

from ctrdistill.data.recipes import Recipe
from ctrdistill.data.schema import SPLITS
from ctrdistill.errors import CtrDistillError

logger = logging.getLogger(__name__)

WORDS = {"train": 0, "training": 0, "valid": 1, "validation": 1, "val": 1, "dev": 1, "test": 2,
         "testing": 2}


def split_of_name(name: str) -> int | None:
    """The split (0 train, 1 valid, 2 test) a file's name names, or None."""
    found = {WORDS[w] for w in re.split(r"[^a-z]+", name.lower()) if w in WORDS}
    return found.pop() if len(found) == 1 else None


def _describe(files: dict[int, list[Path]]) -> str:
    return "; ".join(f"{SPLITS[s]}: {', '.join(p.name for p in files[s]) or 'drawn from train'}"
                     for s in range(3))


def detected_split_files(recipe: Recipe, path: Path) -> dict[int, list[Path]] | None:
    """The natural default: a directory whose every data file (`Recipe.data_files`, where the
    recipe reads its files apart) names one split, a training one among them, gives that split.
    Where only some names do, the files are pooled as before, with a warning."""
    path = Path(path)
    if not path.is_dir() or not recipe.file_splits:
        return None
    files = recipe.data_files(path)
    splits = [split_of_name(f.name) for f in files]
    if all(s is None for s in splits):
        return None
    if any(s is None for s in splits) or 0 not in splits:
        logger.warning(
            "%s: some file names name a split (train, valid, test) but %s, so all files are "
            "pooled and split at random; set split.kind: files and split.files to keep a given "
            "split", path, "not all do" if 0 in splits else "none names train")
        return None
    by_split = {s: [f for f, of in zip(files, splits, strict=True) if of == s] for s in range(3)}
    logger.info("%s: split by file name (split.kind: random pools them): %s", path,
                _describe(by_split))
    return by_split


def given_split_files(recipe: Recipe, path: Path,
                      names: Mapping[str, list[str]] | None) -> dict[int, list[Path]]:
    """`split.kind: files`: the files `names` lists per split (names in the input directory),
    else the ones the file names give; data files in no split are left out, with a warning."""
    path = Path(path)
    if not recipe.file_splits:
        raise CtrDistillError(f"recipe '{recipe.name}' reads its input as one dataset, so it has "
                              "no split files (split.kind files)")
    if not path.is_dir():
        raise CtrDistillError(f"split.kind files needs a directory input of split files, not "
                              f"{path}")
    if names is None:
        detected = detected_split_files(recipe, path)
        if detected is None:
            raise CtrDistillError(
                f"{path}: the file names do not give each file a split (a word train, valid or "
                "test); list them in split.files (train: [...], valid: [...], test: [...])")
        return detected
    by_split: dict[int, list[Path]] = {}
    for split, listed in names.items():
        files = [path / name for name in listed]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CtrDistillError(f"split.files.{split}: no file {missing[0]!r} in {path}")
        by_split[SPLITS.index(split)] = files
    listed_names = [f.name for files in by_split.values() for f in files]
    twice = sorted({n for n in listed_names if listed_names.count(n) > 1})
    if twice:
        raise CtrDistillError(f"split.files: {twice[0]!r} is listed twice")
    if not by_split.get(0):
        raise CtrDistillError("split.files names no train file")
    left = [f.name for f in recipe.data_files(path) if f.name not in listed_names]
    if left:
        logger.warning("%s: data files in no split of split.files, left out: %s", path,
                       ", ".join(left))
    return {s: by_split.get(s, []) for s in range(3)}

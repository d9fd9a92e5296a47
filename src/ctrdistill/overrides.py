"""`--set a.b.c=value` overrides applied to a config mapping before validation."""

from __future__ import annotations

from typing import Any

import yaml

from ctrdistill.errors import CtrDistillError


def apply_overrides(config: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    for assignment in assignments:
        if "=" not in assignment:
            raise CtrDistillError(f"--set expects key.path=value, got '{assignment}'")
        path, raw = assignment.split("=", 1)
        keys = path.strip().split(".")
        target = config
        for key in keys[:-1]:
            node = target.setdefault(key, {})
            if not isinstance(node, dict):
                raise CtrDistillError(f"--set {path}: '{key}' is not a mapping")
            target = node
        try:
            target[keys[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise CtrDistillError(f"--set {path}: '{raw}' is not a valid YAML value "
                                  f"({str(error).splitlines()[0]})") from None
    return config

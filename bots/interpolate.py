"""``${VAR}`` and ``${VAR:-default}`` substitution in loaded config values."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

# ``$${`` is a literal ``${`` so a value can contain the sequence itself.
_PATTERN = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class InterpolationError(ValueError):
    """A ``${VAR}`` that names no set environment variable; ``key`` is the config path."""

    def __init__(self, key: str, variable: str) -> None:
        super().__init__(f"{key}: environment variable {variable} is not set")
        self.key = key
        self.variable = variable


def interpolate_string(value: str, env: Mapping[str, str], key: str = "") -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found is not None and (found != "" or default is None):
            return found
        if default is not None:
            return default
        raise InterpolationError(key or "<root>", name)

    return _PATTERN.sub(replace, value)


def interpolate(data: Any, env: Mapping[str, str] | None = None, key: str = "") -> Any:
    """Substitute in every string of a YAML tree; errors name the dotted key."""
    env = os.environ if env is None else env
    if isinstance(data, str):
        return interpolate_string(data, env, key)
    if isinstance(data, dict):
        return {k: interpolate(v, env, f"{key}.{k}" if key else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, f"{key}[{i}]") for i, v in enumerate(data)]
    return data

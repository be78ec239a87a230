"""``${VAR}`` and ``${VAR:-default}`` substitution in loaded config values.

The walk is also where a YAML tree's shape is checked: a recursive alias (``a: &a
[*a]``) would recurse forever and nested aliases can expand a small file into
billions of values, so both are refused here with the key they were found at.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

# ``$${`` is a literal ``${`` so a value can contain the sequence itself.
_PATTERN = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: More values than any real config has; a file of aliases of aliases gets this far.
MAX_VALUES = 100_000


class InterpolationError(ValueError):
    """``${VAR}``s that name no set environment variable: every one, with its key.

    ``key`` and ``variable`` are the first of ``missing`` (config path, variable name).
    """

    def __init__(self, missing: list[tuple[str, str]]) -> None:
        self.missing = missing
        self.key, self.variable = missing[0]
        super().__init__(self._describe())

    def _describe(self) -> str:
        if len(self.missing) == 1:
            return f"{self.key}: environment variable {self.variable} is not set"
        keys: dict[str, list[str]] = {}
        for key, variable in self.missing:
            keys.setdefault(variable, []).append(key)
        listed = ", ".join(f"{var} ({', '.join(where)})" for var, where in keys.items())
        return f"{len(keys)} environment variables are not set: {listed}"


class ConfigShapeError(ValueError):
    """A YAML tree that cannot be a config (recursive, or expanding without bound)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


def _substitute(
    value: str, env: Mapping[str, str], key: str, missing: list[tuple[str, str]]
) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found is not None and (found != "" or default is None):
            return found
        if default is not None:
            return default
        missing.append((key or "<root>", name))
        return ""

    return _PATTERN.sub(replace, value)


def interpolate_string(value: str, env: Mapping[str, str], key: str = "") -> str:
    missing: list[tuple[str, str]] = []
    result = _substitute(value, env, key, missing)
    if missing:
        raise InterpolationError(missing)
    return result


def interpolate(data: Any, env: Mapping[str, str] | None = None, key: str = "") -> Any:
    """Substitute in every string of a YAML tree; errors name the dotted key.

    Every unset variable is reported at once, in one InterpolationError.
    """
    env = os.environ if env is None else env
    missing: list[tuple[str, str]] = []
    count = [0]
    on_path: set[int] = set()

    def walk(node: Any, key: str) -> Any:
        count[0] += 1
        if count[0] > MAX_VALUES:
            raise ConfigShapeError(
                key or "<root>",
                f"the config expands to more than {MAX_VALUES} values (nested YAML aliases?)",
            )
        if isinstance(node, str):
            return _substitute(node, env, key, missing)
        if not isinstance(node, dict | list):
            return node
        if id(node) in on_path:
            raise ConfigShapeError(key or "<root>", "a YAML alias that contains itself")
        on_path.add(id(node))
        try:
            if isinstance(node, dict):
                return {k: walk(v, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
            return [walk(v, f"{key}[{i}]") for i, v in enumerate(node)]
        finally:
            on_path.discard(id(node))

    result = walk(data, key)
    if missing:
        raise InterpolationError(missing)
    return result

"""The safe YAML reader of profiles: plain data only, with line numbers.

Profiles are composed with ``yaml.SafeLoader`` into nodes (which carry their
line), and every node is checked before any value is built: only the plain
tags (strings, numbers, booleans, null, lists, mappings), no merge keys, and
size, node-count and depth limits, so that "billion laughs", huge files and
recursive aliases fail fast with a ``file:line`` message instead of building
Python objects or exhausting memory.  PyYAML is imported on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError

_YAML_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}

# Limits that make YAML "billion laughs" and huge files fail fast and clearly.
MAX_FILE_BYTES = 1_000_000
MAX_NODES = 10_000
MAX_DEPTH = 16


class _Errors:
    """Collects every problem in one file so the user sees them all at once."""

    def __init__(self, where: str):
        self.where = where
        self.messages: list[str] = []

    def add(self, line: int | None, message: str) -> None:
        prefix = f"{self.where}:{line}" if line else self.where
        self.messages.append(f"{prefix}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            if len(self.messages) == 1:
                raise ConfigError(self.messages[0])
            raise ConfigError(
                f"{len(self.messages)} problems:\n  " + "\n  ".join(self.messages)
            )


def _line(node) -> int:
    return node.start_mark.line + 1


def _check_plain_yaml(root, errors: _Errors) -> bool:
    """Refuse tags, merge keys, alias bombs and deep nesting before reading values."""
    import yaml

    budget = [MAX_NODES]

    def walk(node, depth: int) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            errors.add(
                _line(node),
                f"the document expands to more than {MAX_NODES} YAML nodes "
                "(aliases that repeat aliases?); profiles are small, write the values out",
            )
            return False
        if depth > MAX_DEPTH:
            errors.add(_line(node), "nested too deeply (a recursive YAML alias?)")
            return False
        if node.tag not in _YAML_PLAIN_TAGS:
            errors.add(
                _line(node),
                f"YAML tag {node.tag!r} is not allowed: profiles hold plain values "
                "(strings, numbers, true/false, null, lists, mappings) and never build "
                "Python objects; remove the tag (quote dates and other special values)",
            )
            return False
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge" or (
                    isinstance(key, yaml.ScalarNode) and key.value == "<<"
                ):
                    errors.add(
                        _line(key),
                        "YAML merge keys ('<<') are not supported in profiles; "
                        "write the parameters out",
                    )
                    return False
                if not walk(key, depth + 1) or not walk(value, depth + 1):
                    return False
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                if not walk(item, depth + 1):
                    return False
        return True

    return walk(root, 0)


def _compose_file(text: str, where: str):
    import yaml

    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        parts = [exc.context, exc.problem]
        problem = ", ".join(p for p in parts if p) or str(exc)
        raise ConfigError(f"{where}{line}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level: a few hundred
        # '[' exhaust the stack long before the 16-level check can run.
        raise ConfigError(
            f"{where}: the YAML is nested too deeply; profiles are at most a few levels deep"
        ) from None


def _scalar(node) -> Any:
    import yaml

    return yaml.SafeLoader("").construct_object(node, deep=True)


def _mapping_items(node, errors: _Errors, what: str):
    """Yield ``(key, key_node, value_node)`` of a mapping node; report non-string and duplicate keys."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        errors.add(_line(node), f"{what} must be a mapping (key: value lines)")
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
            errors.add(_line(key_node), f"keys in {what} must be names, not {key_node.value!r}")
            continue
        key = key_node.value
        if key in seen:
            errors.add(
                _line(key_node), f"{key!r} appears twice in {what} (first on line {seen[key]})"
            )
            continue
        seen[key] = _line(key_node)
        yield key, key_node, value_node


def _value_of(node, errors: _Errors, what: str) -> tuple[bool, Any, str | None]:
    """(ok, value, source text) of a parameter value node: a scalar or a list of scalars."""
    import yaml

    if isinstance(node, yaml.ScalarNode):
        return True, _scalar(node), node.value
    if isinstance(node, yaml.SequenceNode):
        items = []
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode):
                errors.add(_line(item), f"{what}: list items must be plain values")
                return False, None, None
            items.append(_scalar(item))
        return True, items, None
    errors.add(_line(node), f"{what}: expected a value or a list, not a mapping")
    return False, None, None


def _read_text(path: Path, where: str) -> str:
    """The text of a profile file, refusing huge, binary and unreadable files."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"{where}: {size} bytes is too large for a profile (limit {MAX_FILE_BYTES})"
            )
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not a UTF-8 text file; a profile is YAML text") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read profile: {exc.strerror or exc}") from None

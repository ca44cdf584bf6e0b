"""Holds a log record against the Elasticsearch index template, field by field, the way indexing would.

Elasticsearch rejects a document when a field's value does not fit its mapping (an object where a
keyword is mapped, a string in a long) and, once a daily index has mapped a key one way, rejects
every later document of another service that sends it the other way. So every key of every record
must land on an explicit mapping (or `labels.*`, strings by design) with a value of its type.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$")
LONG_RANGE = (-(2**63), 2**63 - 1)
# Keys Fluent Bit adds at the top of each record (cri parser, kubernetes filter, es Time_Key):
# a service that logged one of them itself would make a duplicate or clashing field.
FLUENT_BIT_KEYS = {"time", "stream", "_p", "logtag", "kubernetes", "fluentbit_time"}


@dataclass
class IndexTemplate:
    mappings: dict[str, dict] = field(default_factory=dict)  # dotted path -> mapping of a leaf or object
    dynamic_paths: list[tuple[str, dict]] = field(default_factory=list)  # (path_match, mapping)
    patterns: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "IndexTemplate":
        body = json.loads(path.read_text(encoding="utf-8"))
        mappings = body["template"]["mappings"]
        template = cls(patterns=body["index_patterns"])
        template._walk(mappings["properties"], "")
        for entry in mappings.get("dynamic_templates", []):
            (rule,) = entry.values()
            if "path_match" in rule:
                template.dynamic_paths.append((rule["path_match"], rule["mapping"]))
        return template

    def _walk(self, properties: dict, prefix: str) -> None:
        for name, mapping in properties.items():
            path = f"{prefix}{name}"
            self.mappings[path] = mapping
            if "properties" in mapping:
                self._walk(mapping["properties"], f"{path}.")

    def type_of(self, path: str) -> str | None:
        mapping = self.mappings.get(path)
        if mapping is not None:
            return mapping.get("type", "object")
        for pattern, dynamic in self.dynamic_paths:
            if fnmatch.fnmatchcase(path, pattern):
                return dynamic["type"]
        return None

    def problems(self, record: Any) -> list[str]:
        """Why Elasticsearch would reject or mis-map this record; empty when it fits."""
        if not isinstance(record, dict):
            return [f"not a JSON object: {type(record).__name__}"]
        found: list[str] = []
        for key in record:
            if key in FLUENT_BIT_KEYS:
                found.append(f"top-level key {key!r} clashes with what Fluent Bit adds")
        self._check(record, "", found)
        return found

    def _check(self, value: dict, prefix: str, found: list[str]) -> None:
        for key, item in value.items():
            path = f"{prefix}{key}"
            if "." in key:
                found.append(f"{path}: dotted key (Replace_Dots would rename it, away from its mapping)")
                continue
            kind = self.type_of(path)
            if kind is None:
                found.append(f"{path}: not in the index template ({type(item).__name__} {item!r:.60})")
                continue
            for element in item if isinstance(item, list) else [item]:
                problem = self._fits(kind, element, path, found)
                if problem:
                    found.append(f"{path}: {problem}")

    def _fits(self, kind: str, value: Any, path: str, found: list[str]) -> str | None:
        if value is None:
            return None  # a null is an absent field
        if kind == "object":
            if not isinstance(value, dict):
                return f"mapped as an object, got {type(value).__name__} {value!r:.60}"
            self._check(value, f"{path}.", found)
            return None
        if kind == "flattened":
            return None if isinstance(value, dict) else f"mapped flattened, got {type(value).__name__}"
        if isinstance(value, dict):
            return f"mapped as {kind}, got an object"
        if kind in ("keyword", "text"):
            return None if isinstance(value, str) else f"mapped as {kind}, got {type(value).__name__} {value!r}"
        if kind == "long":
            ok = isinstance(value, int) and not isinstance(value, bool) and LONG_RANGE[0] <= value <= LONG_RANGE[1]
            return None if ok else f"mapped as long, got {type(value).__name__} {value!r}"
        if kind == "date":
            ok = (isinstance(value, str) and ISO_DATE.match(value)) or (isinstance(value, int) and not isinstance(value, bool))
            return None if ok else f"mapped as date (strict_date_optional_time), got {value!r}"
        if kind == "boolean":
            return None if isinstance(value, bool) else f"mapped as boolean, got {value!r}"
        return f"mapping type {kind} not handled by this check"

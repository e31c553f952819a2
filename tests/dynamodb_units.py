"""DynamoDB's sizing of items and index entries, as its documentation states it
(Developer Guide, "Item sizes and formats" and "Capacity unit consumption"): what a write
costs in write request units, one per KB rounded up, in the table and in each index entry."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Mapping

# Every index entry carries 100 bytes besides its attributes.
INDEX_ENTRY_OVERHEAD = 100
KB = 1024


def value_size(value: Mapping[str, Any]) -> int:
    (kind, data), = value.items()
    if kind == "S":
        return len(data.encode("utf-8"))
    if kind == "B":
        return len(data)
    if kind == "N":
        # About one byte per two significant digits, plus one.
        digits = Decimal(data).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + value_size(inner) + 1 for name, inner in data.items())
    if kind == "L":
        return 3 + sum(value_size(inner) + 1 for inner in data)
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: element}) for element in data)
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(item: Mapping[str, Mapping[str, Any]]) -> int:
    """A standard write of `item` to the table."""
    return max(1, math.ceil(item_size(item) / KB))


def whole_entry_units(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Writing `item`'s entry to an index that projects ALL attributes."""
    return max(1, math.ceil((item_size(item) + INDEX_ENTRY_OVERHEAD) / KB))

"""A tiny evaluator of IAM Deny statements, to show which sessions a containment policy stops."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest


def _values(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _holds(operator: str, key: str, expected: Any, request: dict[str, str]) -> bool:
    actual = request.get(key)
    if operator == "Null":
        return (actual is None) == (str(expected).lower() == "true")
    if operator == "StringEquals":
        return actual is not None and actual in _values(expected)
    if operator == "Bool":
        return actual is not None and actual.lower() in [v.lower() for v in _values(expected)]
    if operator == "NotIpAddress":  # a negated operator: a request without the key matches
        return actual is None or not any(ipaddress.ip_address(actual) in ipaddress.ip_network(c) for c in _values(expected))
    if operator == "DateLessThan":
        return actual is not None and actual < str(expected)
    raise AssertionError(f"operator {operator} not modelled")


def denied(document: str | dict, request: dict[str, str]) -> bool:
    """Does any Deny statement of ``document`` apply to a request with these condition keys?"""
    doc = json.loads(document) if isinstance(document, str) else document
    statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    for st in statements:
        if st["Effect"] != "Deny" or st["Action"] != "*":
            continue
        if all(_holds(op, key, value, request) for op, block in st.get("Condition", {}).items() for key, value in block.items()):
            return True
    return False


@pytest.fixture
def iam_denies():
    return denied

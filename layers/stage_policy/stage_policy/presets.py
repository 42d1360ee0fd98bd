"""Presets for the stage frameworks in common use, with the field's values.

A policy names one in ``framework:`` and overrides what differs; see :func:`apply_preset`.
Presets are plain dicts (validated like any policy) so that they cost nothing to import.
"""

from __future__ import annotations

import copy
from typing import Any

_MB = 1024 * 1024

#: Every production-data stage: SSE-KMS, all four public access blocks, TLS only, versioning.
_FULL_POSTURE: dict[str, Any] = {
    "encryption": "aws:kms",
    "kms_key": None,
    "public_access": {"block_public_acls": True, "ignore_public_acls": True, "block_public_policy": True,
                      "restrict_public_buckets": True},
    "tls_only": True,
    "versioning": True,
    "access_logging": None,
}
#: Infra stages without production data: SSE-S3 is enough and versioning is not required.
_LIGHT_POSTURE: dict[str, Any] = _FULL_POSTURE | {"encryption": "AES256", "versioning": False}

_LAB: dict[str, Any] = {
    "description": "Interactive lab on production data (perishable, no download)",
    "production_data": True,
    "interactive_access": "read-write",
    "retention": {
        "default_days": 90,
        "noncurrent_version_days": 7,
        "prefix_classes": [{"prefix": "raw/", "days": 30}, {"prefix": "aggregated/", "days": 90}],
    },
    "download": "denied",
    "exfiltration": {"max_objects": 1000, "max_bytes": 50 * _MB, "window_minutes": 10, "response": "contain"},
    "break_glass": None,
    "posture": _FULL_POSTURE,
}

_UAT: dict[str, Any] = {
    "description": "Automation-only UAT on production data",
    "production_data": True,
    "interactive_access": "none",
    "retention": {"default_days": 30, "noncurrent_version_days": 7},
    "download": "denied",
    "exfiltration": {"max_objects": 1000, "max_bytes": 50 * _MB, "window_minutes": 10, "response": "contain"},
    "break_glass": {"allowed": True, "max_duration_minutes": 120},
    "posture": _FULL_POSTURE,
}

_PROD: dict[str, Any] = {
    "description": "Locked production: service principals only, permanent and immutable output",
    "production_data": True,
    "interactive_access": "none",
    "retention": {"permanent": True, "immutable": True},
    "download": "denied",
    "exfiltration": {"max_objects": 500, "max_bytes": 50 * _MB, "window_minutes": 10, "response": "contain"},
    "break_glass": {"allowed": True, "max_duration_minutes": 120},
    "posture": _FULL_POSTURE,
}


def _infra(description: str, access: str) -> dict[str, Any]:
    return {
        "description": description,
        "production_data": False,
        "interactive_access": access,
        "retention": {"default_days": 30, "noncurrent_version_days": 7},
        "download": "allowed",
        "exfiltration": {"max_objects": 100_000, "max_bytes": 100 * 1024 * _MB, "window_minutes": 60, "response": "alert"},
        "break_glass": None,
        "posture": _LIGHT_POSTURE,
    }


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "five-stage": {
        "infra-dev": _infra("Infrastructure development, no production data", "read-write"),
        "infra-preprod": _infra("Infrastructure pre-production, no production data", "read-only"),
        "prod-discovery": _LAB,
        "prod-integration": _UAT,
        "final-prod": _PROD,
    },
    "three-stage": {"prod-discovery": _LAB, "prod-integration": _UAT, "final-prod": _PROD},
    "two-stage": {"prod-discovery": _LAB, "final-prod": _PROD},
    "three-workspace": {"prod-analytics": _LAB, "prod-parallel": _UAT, "prod": _PROD},
}


def deep_merge(base: Any, override: Any) -> Any:
    """Override wins; mappings merge key by key, everything else (lists too) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return override


def apply_preset(document: dict[str, Any]) -> dict[str, Any]:
    """Return the document with its framework's preset stages merged under its own.

    Stages the document names are merged over the preset's; stages it adds are kept as
    written; ``framework: custom`` (or none) uses the document's stages alone.
    """
    framework = document.get("framework", "custom")
    preset = PRESETS.get(framework) if isinstance(framework, str) else None
    if preset is None:
        return document
    stages = document.get("stages")
    if stages is None:
        stages = {}
    if not isinstance(stages, dict):
        return document  # let validation name the field
    merged = dict(document)
    merged["stages"] = deep_merge(copy.deepcopy(preset), stages)
    return merged

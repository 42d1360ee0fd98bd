"""The AWS calls of the exfiltration function, one small class per concern (boto3 clients injected)."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any, BinaryIO

from exfil.grants import GrantWindow
from exfil.records import Identity
from exfil.windows import Delta, WindowState, merge_state

from stage_policy import keys
from stage_policy.errors import is_code


class LogFileSource:
    permissions = ("s3:GetObject",)

    def __init__(self, s3: Any):
        self._s3 = s3

    def open(self, bucket: str, key: str) -> BinaryIO:
        """The object's body as a stream: the reader pulls 1 MiB at a time, nothing is loaded whole."""
        return self._s3.get_object(Bucket=bucket, Key=key)["Body"]


class DynamoWindowStore:
    """Read windows in the state table: one item and one conditional write per (stage, identity) per file.

    Objects are remembered by a 64-bit hash of (bucket, key, version), packed with the
    minute of their last read (12 bytes each, a binary attribute), so an item stays well
    under DynamoDB's 400 KB at :data:`~exfil.windows.SEEN_CAP` objects.

    Idempotent per log file: the item remembers the last :data:`FILES_KEPT` files merged
    into it (``delta.source``), so a retried file (its containment failed, SQS delivers it
    again) adds neither its objects nor its bytes a second time.
    """

    permissions = ("dynamodb:GetItem", "dynamodb:PutItem")

    def __init__(self, ddb: Any, table: str, retries: int = 5):
        self._ddb, self._table, self._retries = ddb, table, retries
        self.writes = 0

    def merge(self, stage: str, identity: str, delta: Delta) -> WindowState:
        # identities are session ARNs (+ sourceIdentity); an implausibly long one is hashed, within the key limit
        key = keys.exfil_window(stage, identity if len(identity) <= 1024 else "sha256:" + hashlib.sha256(identity.encode()).hexdigest())
        hashed = Delta({object_hash(o): m for o, m in delta.objects.items()}, delta.minutes, delta.agents, delta.first,
                       delta.keep_after, delta.source)
        mark = hashlib.sha256(delta.source.encode()).hexdigest()[:16] if delta.source else None
        for _ in range(self._retries):
            item = self._ddb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
            old, version = _decode(item)
            files = json.loads(item["files"]["S"]) if item and "files" in item else []
            if mark is not None and mark in files and old is not None:
                old.new_families = ()
                return old  # this file was merged already (a retry): nothing to add, nothing to write
            state = merge_state(old, hashed, prune_every=0)
            newest = max(state.minutes, default=delta.keep_after)
            body = {
                "minutes": {"S": json.dumps({str(m): v for m, v in state.minutes.items()}, separators=(",", ":"))},
                "hours": {"S": json.dumps({str(h): v for h, v in state.hours.items()}, separators=(",", ":"))},
                "families": {"S": json.dumps(state.families, separators=(",", ":"))},
                "first_seen": {"N": str(state.first_seen)},
                "version": {"N": str(version + 1)},
                # windows are perishable; learned client families live for a learning period past the last read
                "expires_at": {"N": str((newest + 400 * 1440) * 60)},
            }
            if state.seen:
                body["seen"] = {"B": b"".join(_SEEN.pack(h, m) for h, m in state.seen.items())}
            if mark is not None:
                body["files"] = {"S": json.dumps((files + [mark])[-FILES_KEPT:])}
            try:
                self.writes += 1
                self._ddb.put_item(
                    TableName=self._table, Item={**key, **body},
                    ConditionExpression="attribute_not_exists(pk) OR version = :v",
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                )
                return state
            except Exception as exc:
                if not is_code(exc, "ConditionalCheckFailedException"):
                    raise
        raise RuntimeError(f"window {stage}/{identity}: too much contention ({self._retries} conflicting writes)")


_SEEN = struct.Struct("<QI")
#: log files remembered per window item (retries arrive within minutes; 5 receives at most before the DLQ)
FILES_KEPT = 32


def object_hash(obj: Any) -> int:
    """A stable 64-bit id of an object (bucket, key, version): the same in every container."""
    bucket, key, version = obj
    raw = f"{bucket}\x00{key}\x00{version or ''}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


def _decode(item: dict[str, Any] | None) -> tuple[WindowState | None, int]:
    if not item:
        return None, 0
    minutes = {int(m): (v[0], v[1]) for m, v in json.loads(item["minutes"]["S"]).items()}
    hours = {int(h): (v[0], v[1]) for h, v in json.loads(item.get("hours", {}).get("S", "{}")).items()}
    raw = item.get("seen", {}).get("B", b"")
    seen = {h: m for h, m in _SEEN.iter_unpack(raw[: len(raw) - len(raw) % _SEEN.size])}
    slots = list(minutes.values()) + list(hours.values())
    state = WindowState(minutes, hours, seen, json.loads(item["families"]["S"]), int(item["first_seen"]["N"]),
                        [sum(v[0] for v in slots), sum(v[1] for v in slots)])
    return state, int(item["version"]["N"])


class GrantLookup:
    """The break-glass grants of a role and the sessions approved under them (items the break-glass function writes).

    Read once per role per log file (this object lives for one file): the role's pointer, which names its
    latest grant and the one before (kept a day past the deadline, so that reads judged after a grant closed
    are still judged against it), then those grants' register entries, which hold the sessions, the window
    and the close. A role with no pointer costs one GetItem. What a grant covers is decided in :mod:`exfil.grants`.
    """

    permissions = ("dynamodb:GetItem",)

    def __init__(self, ddb: Any, table: str):
        self._ddb, self._table = ddb, table
        self._cache: dict[str, tuple[GrantWindow, ...]] = {}

    def grants(self, role: str) -> tuple[GrantWindow, ...]:
        if role not in self._cache:
            pointer = self._ddb.get_item(TableName=self._table, Key=keys.breakglass_grant(role)).get("Item") or {}
            found: list[GrantWindow] = []
            asked: set[str] = set()
            for name in ("grant_id", "previous_grant_id"):
                grant_id = (pointer.get(name) or {}).get("S")
                if not grant_id or grant_id in asked:
                    continue
                asked.add(grant_id)
                record = self._ddb.get_item(TableName=self._table, Key=keys.breakglass_record(grant_id)).get("Item")
                window = GrantWindow.from_record(grant_id, record)
                if window is not None:
                    found.append(window)
            self._cache[role] = tuple(found)
        return self._cache[role]

    def active(self, ident: Identity, ui: Any, when: Any) -> bool:
        """Is this event (its identity, ``userIdentity`` and ``eventTime``) covered by a grant on its role, open or
        since closed? Only role sessions can be: the grant's principal acts through a session of the break-glass role."""
        if ident.role_name is None or ident.kind != "AssumedRole":
            return False
        return any(g.covers(ui, when) for g in self.grants(ident.role_name))

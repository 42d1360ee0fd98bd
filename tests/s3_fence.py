"""Bucket-policy conditions under moto: the few IAM semantics the schema gate's fence relies on, evaluated per request.

moto 5 has no request context for bucket policies: a statement with a Condition is treated as
matching every request whose action it names (so a conditional Deny refuses every GET, or
every PUT, in the bucket), and the principal is never known. :func:`enforce` replaces that,
inside ``mock_aws``, with an evaluation of each object request against the bucket's
Deny statements, with the context AWS would give them:

* ``aws:PrincipalArn`` from the request's access key (the test says whose key is whose:
  moto resolves no principal for the dummy keys);
* ``s3:ExistingObjectTag/<key>`` from the object (version) the request names;
* ``s3:RequestObjectTagKeys`` / ``s3:RequestObjectTag/<key>`` from ``x-amz-tagging`` or a
  PutObjectTagging body; ``s3:x-amz-copy-source`` from a copy, whose source read is
  evaluated too (``s3:GetObject`` on the source, as AWS does).

Condition operators follow the IAM reference: a key absent from the request makes positive
operators false and negated ones (``StringNotEquals``, ``ArnNotEquals``...) true;
``ForAnyValue`` over an absent key is false; ``Null`` tests presence. Only what the fence
uses is implemented; an operator it does not know makes the evaluation raise, never pass.
"""

from __future__ import annotations

import fnmatch
import json
import re
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlparse

from stagewarden.motoserver import unconditional_only

Context = dict[str, Any]


def _like(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _op(name: str, values: list[str], actual: Any) -> bool:
    """One condition operator on one key (``actual`` None: the key is absent)."""
    qualifier, _, op = name.rpartition(":")
    if op.endswith("IfExists"):
        if actual is None:
            return True
        op = op[: -len("IfExists")]
    if op == "Null":
        want_absent = str(values[0]).lower() == "true"
        return (actual is None) == want_absent
    negated = "Not" in op
    base = op.replace("Not", "")
    match = {"StringEquals": lambda p, v: p == v, "StringLike": _like, "ArnEquals": lambda p, v: p == v, "ArnLike": _like,
             "Bool": lambda p, v: str(p).lower() == str(v).lower()}.get(base)
    if match is None:
        raise NotImplementedError(f"condition operator {name} is not evaluated here")
    if qualifier in ("ForAnyValue", "ForAllValues"):
        items = [] if actual is None else list(actual)
        if qualifier == "ForAnyValue":
            hit = any(any(match(p, v) for p in values) for v in items)
            return (not hit) if negated else hit
        return all((not any(match(p, v) for p in values)) if negated else any(match(p, v) for p in values) for v in items)
    if actual is None:
        return negated
    hit = any(match(p, str(actual)) for p in values)
    return not hit if negated else hit


def denied(policy: dict[str, Any] | None, action: str, resource: str, context: Context) -> list[str]:
    """The Sids of the Deny statements (Principal ``*``) that refuse ``action`` on ``resource`` in ``context``."""
    if not policy:
        return []
    statements = policy.get("Statement", [])
    out = []
    for st in [statements] if isinstance(statements, dict) else statements:
        if st.get("Effect") != "Deny" or st.get("Principal") not in ("*", {"AWS": "*"}):
            continue
        actions = st.get("Action", [])
        resources = st.get("Resource", [])
        if not any(_like(a, action) for a in ([actions] if isinstance(actions, str) else actions)):
            continue
        if not any(_like(r, resource) for r in ([resources] if isinstance(resources, str) else resources)):
            continue
        conditions = st.get("Condition", {})
        if all(_op(op, [v] if isinstance(v, str) else list(v), context.get(key))
               for op, keys in conditions.items() for key, v in keys.items()):
            out.append(st.get("Sid", "?"))
    return out


def _tags_from_query(text: str) -> dict[str, str]:
    return {k: v[0] if v else "" for k, v in parse_qs(text, keep_blank_values=True).items()}


def _tags_from_xml(body: bytes) -> dict[str, str]:
    text = body.decode() if isinstance(body, bytes) else str(body or "")
    keys = re.findall(r"<Key>(.*?)</Key>", text)
    values = re.findall(r"<Value>(.*?)</Value>", text)
    return dict(zip(keys, values))


@contextmanager
def enforce(principals: dict[str, str]) -> Iterator[list[tuple[str, str, str, list[str]]]]:
    """Inside ``mock_aws``: every object request is checked against its bucket's Deny statements.

    ``principals`` maps access key ids to the principal ARN AWS would see. Yields a list of
    ``(principal, action, resource, sids)`` for every refusal, for the test to assert on.
    """
    from moto.s3 import models, responses
    from moto.s3.exceptions import S3ClientError

    refusals: list[tuple[str, str, str, list[str]]] = []
    original_key_response = responses.S3Response._key_response
    original_permission = models.FakeBucket.get_permission

    def key_response(self: Any, request: Any, full_url: str) -> Any:
        query = parse_qs(urlparse(full_url).query, keep_blank_values=True)
        bucket_name = self.parse_bucket_name_from_url(request, full_url)
        key_name = self.parse_key_name()
        try:
            bucket = self.backend.get_bucket(bucket_name)
        except S3ClientError:
            return original_key_response(self, request, full_url)
        auth = request.headers.get("Authorization", "")
        match = re.search(r"Credential=([^/]+)/", auth)
        principal = principals.get(match.group(1) if match else "", "arn:aws:iam::123456789012:root")
        version = (query.get("versionId") or [None])[0]
        method = request.method.upper()
        checks: list[tuple[str, str, Context]] = []
        context: Context = {"aws:PrincipalArn": principal, "aws:SecureTransport": str(full_url.startswith("https")).lower()}

        def existing(bucket_: str, key_: str, version_: str | None) -> Context:
            try:
                obj = self.backend.get_object(bucket_, key_, version_id=version_)
            except S3ClientError:
                return {}
            if obj is None:
                return {}
            tags = self.backend.tagger.get_tag_dict_for_resource(obj.arn)
            return {f"s3:ExistingObjectTag/{k}": v for k, v in tags.items()}

        resource = f"arn:aws:s3:::{bucket_name}/{key_name}"
        versioned = "Version" if version else ""
        if method in ("GET", "HEAD") and "tagging" not in query and "uploadId" not in query:
            checks.append((f"s3:GetObject{versioned}", resource, {**context, **existing(bucket_name, key_name, version)}))
        elif method == "PUT" and "tagging" in query:
            tags = _tags_from_xml(self.body)
            checks.append((f"s3:PutObject{versioned}Tagging", resource,
                           {**context, **existing(bucket_name, key_name, version),
                            "s3:RequestObjectTagKeys": list(tags), **{f"s3:RequestObjectTag/{k}": v for k, v in tags.items()}}))
        elif method == "DELETE" and "tagging" in query:
            checks.append((f"s3:DeleteObject{versioned}Tagging", resource, {**context, **existing(bucket_name, key_name, version)}))
        elif (method == "PUT" and "tagging" not in query) or (method == "POST" and "uploads" in query):
            put: Context = dict(context)
            tags = _tags_from_query(request.headers.get("x-amz-tagging", ""))
            if tags:
                put["s3:RequestObjectTagKeys"] = list(tags)
                put.update({f"s3:RequestObjectTag/{k}": v for k, v in tags.items()})
            source = request.headers.get("x-amz-copy-source")
            if source:
                put["s3:x-amz-copy-source"] = source
                src = unquote(source.lstrip("/"))
                src_path, _, src_query = src.partition("?")
                src_bucket, _, src_key = src_path.partition("/")
                src_version = parse_qs(src_query).get("versionId", [None])[0]
                src_policy = json.loads(self.backend.get_bucket(src_bucket).policy or "null")
                src_context = {**context, **existing(src_bucket, src_key, src_version)}
                sids = denied(src_policy, "s3:GetObject" + ("Version" if src_version else ""),
                              f"arn:aws:s3:::{src_bucket}/{src_key}", src_context)
                if sids:
                    refusals.append((principal, "s3:GetObject", f"arn:aws:s3:::{src_bucket}/{src_key}", sids))
                    return 403, {}, b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            checks.append(("s3:PutObject", resource, put))
        policy = json.loads(bucket.policy) if bucket.policy else None
        for action, res, ctx in checks:
            sids = denied(policy, action, res, ctx)
            if sids:
                refusals.append((principal, action, res, sids))
                return 403, {}, b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        return original_key_response(self, request, full_url)

    responses.S3Response._key_response = key_response
    models.FakeBucket.get_permission = unconditional_only  # moto's own check: statements without conditions
    try:
        yield refusals
    finally:
        responses.S3Response._key_response = original_key_response
        models.FakeBucket.get_permission = original_permission

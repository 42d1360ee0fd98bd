"""Synthetic CloudTrail records in CloudTrail's own shape, for the demo, tests and benchmarks.

Deterministic for a given seed. The records carry every field real S3 data events carry
(userIdentity with session issuer, tlsDetails, resources, additionalEventData with
bytesTransferredOut), so sizes and parsing costs match real log files (~1.3 KB a record).
"""

from __future__ import annotations

import gzip
import hashlib
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import orjson

ACCOUNT = "123456789012"
CLI_UA = "[aws-cli/2.15.30 Python/3.11.8 Darwin/23.4.0 exe/x86_64 prompt/off command/s3.cp]"
BOTO3_SERVER_UA = "[Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.213 md/arch#x86_64 lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69]"
SPARK_UA = "[Hadoop 3.3.6, aws-sdk-java/1.12.599 Linux/5.10.213 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS java/17.0.10 kotlin/1.6.20 vendor/Amazon.com_Inc. cfg/retry-mode/legacy]"


def role_id(role: str, account: str = ACCOUNT) -> str:
    """A role's unique id (``AROA…``), stable for a given role and account, as IAM's is."""
    digest = hashlib.sha256(f"{account}/{role}".encode()).digest()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "AROA" + "".join(alphabet[b % 32] for b in digest[:17])


def _identity(role: str, session: str, account: str, rng: random.Random, source_identity: str | None = None) -> dict[str, Any]:
    principal_id = role_id(role, account)
    context: dict[str, Any] = {
        "sessionIssuer": {"type": "Role", "principalId": principal_id, "arn": f"arn:aws:iam::{account}:role/{role}",
                          "accountId": account, "userName": role},
        "attributes": {"creationDate": "2026-11-22T07:55:12Z", "mfaAuthenticated": "false"},
    }
    if source_identity is not None:
        context["sourceIdentity"] = source_identity
    if session.startswith("i-"):
        context["ec2RoleDelivery"] = "2.0"
    return {
        "type": "AssumedRole",
        "principalId": f"{principal_id}:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
        "accountId": account,
        "accessKeyId": "ASIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
        "sessionContext": context,
    }


def data_event(*, role: str, session: str, bucket: str, key: str, when: datetime, rng: random.Random,
               name: str = "GetObject", user_agent: str = CLI_UA, ip: str = "81.2.69.142", nbytes: int = 0,
               vpce: str | None = None, auth: str = "AuthHeader", account: str = ACCOUNT, source_identity: str | None = None,
               version: str | None = None, byte_range: str | None = None, copy_from: str | None = None,
               error_code: str | None = None) -> dict[str, Any]:
    """One S3 data event. ``copy_from`` (``bucket/key``) makes it a server-side copy's ``x-amz-copy-source``."""
    record: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": _identity(role, session, account, rng, source_identity),
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "s3.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": ip,
        "userAgent": user_agent,
        "requestParameters": {"bucketName": bucket, "Host": f"{bucket}.s3.us-east-1.amazonaws.com", "key": key},
        "responseElements": None,
        "additionalEventData": {
            "SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256", "bytesTransferredIn": 0,
            "AuthenticationMethod": auth, "x-amz-id-2": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(76)),
            "bytesTransferredOut": nbytes,
        },
        "requestID": "".join(rng.choice("0123456789ABCDEF") for _ in range(16)),
        "eventID": str(uuid.UUID(int=rng.getrandbits(128))),
        "readOnly": name.startswith(("Get", "Head", "List")),
        "resources": [
            {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
            {"accountId": account, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
        ],
        "eventType": "AwsApiCall",
        "managementEvent": False,
        "recipientAccountId": account,
        "eventCategory": "Data",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                       "clientProvidedHostHeader": f"{bucket}.s3.us-east-1.amazonaws.com"},
    }
    if vpce:
        record["vpcEndpointId"] = vpce
        record["vpcEndpointAccountId"] = account
    params = record["requestParameters"]
    if version is not None:
        params["versionId"] = version
    if byte_range is not None:
        params["Range"] = byte_range
    if copy_from is not None:
        params["x-amz-copy-source"] = copy_from
    if error_code is not None:
        record["errorCode"] = error_code
        record["errorMessage"] = "Access Denied"
    return record


def bulk_download(*, role: str, session: str, bucket: str, objects: int, start: datetime, seconds: float,
                  nbytes: int, seed: int = 7, prefix: str = "raw/2026/11/", **kwargs: Any) -> list[dict[str, Any]]:
    """What `aws s3 cp --recursive s3://bucket/ ./` leaves in CloudTrail: one GetObject per object."""
    rng = random.Random(seed)
    step = seconds / max(objects, 1)
    return [data_event(role=role, session=session, bucket=bucket, key=f"{prefix}part-{i:05d}.parquet",
                       when=start + timedelta(seconds=i * step), rng=rng, nbytes=nbytes, **kwargs) for i in range(objects)]


def ranged_download(*, role: str, session: str, bucket: str, objects: int, parts: int, start: datetime, seconds: float,
                    part_bytes: int, seed: int = 8, **kwargs: Any) -> list[dict[str, Any]]:
    """A multi-part download (``aws s3 cp`` of large files, Spark): ``parts`` ranged GETs per object."""
    rng = random.Random(seed)
    total = objects * parts
    step = seconds / max(total, 1)
    return [data_event(role=role, session=session, bucket=bucket, key=f"big/file-{i // parts:03d}.parquet",
                       when=start + timedelta(seconds=i * step), rng=rng, nbytes=part_bytes,
                       byte_range=f"bytes={(i % parts) * part_bytes}-{(i % parts + 1) * part_bytes - 1}", **kwargs)
            for i in range(total)]


def copies(*, role: str, session: str, source_bucket: str, dest_bucket: str, objects: int, start: datetime, seconds: float,
           name: str = "CopyObject", seed: int = 9, **kwargs: Any) -> list[dict[str, Any]]:
    """Server-side copies (``aws s3 cp s3://stage/… s3://elsewhere/…``): logged on the destination bucket."""
    rng = random.Random(seed)
    step = seconds / max(objects, 1)
    return [data_event(role=role, session=session, bucket=dest_bucket, key=f"loot/part-{i:05d}.parquet", name=name,
                       when=start + timedelta(seconds=i * step), rng=rng, nbytes=0,
                       copy_from=f"{source_bucket}/raw/2026/11/part-{i:05d}.parquet", **kwargs) for i in range(objects)]


def instance_call(*, role: str, instance: str, when: datetime, ip: str, event_name: str = "GetCallerIdentity",
                  source: str = "sts.amazonaws.com", vpce: str | None = None, seed: int = 12,
                  user_agent: str = BOTO3_SERVER_UA) -> dict[str, Any]:
    """A call made with an EC2 instance profile's credentials (the session is named after the instance)."""
    rng = random.Random(seed)
    record = management_event(event_name, source, {}, role=role, session=instance, when=when, seed=seed)
    record.update(sourceIPAddress=ip, userAgent=user_agent, readOnly=True,
                  eventID=str(uuid.UUID(int=rng.getrandbits(128))))
    if vpce:
        record["vpcEndpointId"] = vpce
    return record


def shared_role_day(*, colleagues: int, role: str, bucket: str, start: datetime, seed: int = 21,
                    reads_each: int = 300, minutes: int = 60) -> list[dict[str, Any]]:
    """N colleagues on one shared notebook role, each reading a few hundred objects in an hour (normal lab work)."""
    rng = random.Random(seed)
    out = []
    for c in range(colleagues):
        session = f"colleague{c}@example.com"
        for i in range(reads_each):
            out.append(data_event(role=role, session=session, bucket=bucket, key=f"features/{c:03d}/{i:05d}.parquet",
                                  when=start + timedelta(seconds=rng.uniform(0, minutes * 60)), rng=rng, nbytes=40_000,
                                  user_agent=BOTO3_SERVER_UA, ip=f"10.0.{c % 256}.{rng.randrange(256)}",
                                  vpce="vpce-0a1b2c3d4e5f67890"))
    out.sort(key=lambda r: r["eventTime"])
    return out


def high_cardinality(records: int, *, seed: int, start: datetime, sessions: int = 5000, roles: int = 50,
                     bucket_prefix: str = "acme-lab-") -> list[dict[str, Any]]:
    """Notebook traffic of a large platform: thousands of distinct sessions over a few shared roles."""
    rng = random.Random(seed)
    out = []
    for i in range(records):
        n = rng.randrange(sessions)
        out.append(data_event(role=f"NotebookRole{n % roles}", session=f"user{n}@example.com",
                              bucket=f"{bucket_prefix}{rng.randrange(5)}", key=f"features/{rng.randrange(10**6):07d}.parquet",
                              when=start + timedelta(seconds=i * 0.3), rng=rng, user_agent=BOTO3_SERVER_UA,
                              ip=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}", nbytes=rng.randrange(1000, 60000),
                              vpce="vpce-0a1b2c3d4e5f67890"))
    return out


def workload(records: int, *, seed: int, start: datetime | None = None, bucket_prefix: str = "acme-lab-") -> list[dict[str, Any]]:
    """Everyday lab traffic: Spark jobs and notebooks through the VPC endpoint, below every threshold."""
    rng = random.Random(seed)
    start = start or datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
    roles = [(f"sagemaker-training-{i}", f"job-{i}", SPARK_UA) for i in range(40)] + \
            [(f"DataScientist{i}", f"user{i}@example.com", BOTO3_SERVER_UA) for i in range(60)]
    out = []
    for i in range(records):
        role, session, ua = roles[rng.randrange(len(roles))]
        name = "GetObject" if rng.random() < 0.85 else rng.choice(["PutObject", "HeadObject", "ListObjects"])
        out.append(data_event(role=role, session=session, bucket=f"{bucket_prefix}{rng.randrange(5)}",
                              key=f"features/{rng.randrange(10**6):07d}.parquet", when=start + timedelta(seconds=i * 0.05),
                              rng=rng, name=name, user_agent=ua, ip=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                              nbytes=rng.randrange(1000, 60000), vpce="vpce-0a1b2c3d4e5f67890"))
    return out


def log_file(records: Iterable[dict[str, Any]], compress: bool = True) -> bytes:
    """A CloudTrail log file: ``{"Records":[...]}`` on one line, gzip-compressed as CloudTrail delivers it."""
    body = b'{"Records":[' + b",".join(orjson.dumps(r) for r in records) + b"]}"
    return gzip.compress(body, compresslevel=6) if compress else body


def log_key(when: datetime, suffix: str, account: str = ACCOUNT, org_id: str | None = None) -> str:
    """Where CloudTrail delivers a log file (``AWSLogs/<org id>/<account>/…`` for an organisation trail)."""
    org = f"{org_id}/" if org_id else ""
    return (f"AWSLogs/{org}{account}/CloudTrail/us-east-1/{when:%Y/%m/%d}/"
            f"{account}_CloudTrail_us-east-1_{when:%Y%m%dT%H%MZ}_{suffix}.json.gz")


def management_event(event_name: str, source: str, request_parameters: dict[str, Any], *, role: str = "DataScientistAlice",
                     session: str = "alice@example.com", when: datetime | None = None, seed: int = 11,
                     error_code: str | None = None, account: str = ACCOUNT,
                     response_elements: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CloudTrail record of one management call (the `detail` of an EventBridge CloudTrail event)."""
    rng = random.Random(seed)
    when = when or datetime(2026, 11, 22, 8, 30, tzinfo=timezone.utc)
    record = {
        "eventVersion": "1.09", "userIdentity": _identity(role, session, account, rng),
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "eventSource": source, "eventName": event_name,
        "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.23", "userAgent": CLI_UA,
        "requestParameters": request_parameters, "responseElements": response_elements,
        "requestID": "".join(rng.choice("0123456789ABCDEF") for _ in range(16)),
        "eventID": str(uuid.UUID(int=rng.getrandbits(128))), "readOnly": False, "eventType": "AwsApiCall",
        "managementEvent": True, "recipientAccountId": account, "eventCategory": "Management",
    }
    if error_code:
        record["errorCode"] = error_code
        record["errorMessage"] = "Access Denied"
    return record


def eventbridge_envelope(detail: dict[str, Any]) -> dict[str, Any]:
    """How EventBridge wraps a CloudTrail management event."""
    return {
        "version": "0", "id": str(uuid.UUID(int=random.Random(detail.get("eventID")).getrandbits(128))),
        "detail-type": "AWS API Call via CloudTrail", "source": "aws." + detail["eventSource"].split(".")[0],
        "account": ACCOUNT, "time": detail["eventTime"], "region": detail["awsRegion"], "resources": [], "detail": detail,
    }

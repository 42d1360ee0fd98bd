"""Synthetic CloudTrail records in CloudTrail's own shape, for the demo, tests and benchmarks.

Deterministic for a given seed. The records carry every field real S3 data events carry
(userIdentity with session issuer, tlsDetails, resources, additionalEventData with
bytesTransferredOut), so sizes and parsing costs match real log files (~1.3 KB a record).
"""

from __future__ import annotations

import gzip
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import orjson

ACCOUNT = "123456789012"
CLI_UA = "[aws-cli/2.15.30 Python/3.11.8 Darwin/23.4.0 exe/x86_64 prompt/off command/s3.cp]"
BOTO3_SERVER_UA = "[Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.213 md/arch#x86_64 lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69]"
SPARK_UA = "[Hadoop 3.3.6, aws-sdk-java/1.12.599 Linux/5.10.213 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS java/17.0.10 kotlin/1.6.20 vendor/Amazon.com_Inc. cfg/retry-mode/legacy]"


def _identity(role: str, session: str, account: str, rng: random.Random) -> dict[str, Any]:
    principal_id = "AROA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(17))
    return {
        "type": "AssumedRole",
        "principalId": f"{principal_id}:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
        "accountId": account,
        "accessKeyId": "ASIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "principalId": principal_id, "arn": f"arn:aws:iam::{account}:role/{role}",
                              "accountId": account, "userName": role},
            "attributes": {"creationDate": "2026-11-22T07:55:12Z", "mfaAuthenticated": "false"},
        },
    }


def data_event(*, role: str, session: str, bucket: str, key: str, when: datetime, rng: random.Random,
               name: str = "GetObject", user_agent: str = CLI_UA, ip: str = "81.2.69.142", nbytes: int = 0,
               vpce: str | None = None, auth: str = "AuthHeader", account: str = ACCOUNT) -> dict[str, Any]:
    record: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": _identity(role, session, account, rng),
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
    return record


def bulk_download(*, role: str, session: str, bucket: str, objects: int, start: datetime, seconds: float,
                  nbytes: int, seed: int = 7, **kwargs: Any) -> list[dict[str, Any]]:
    """What `aws s3 cp --recursive s3://bucket/ ./` leaves in CloudTrail: one GetObject per object."""
    rng = random.Random(seed)
    step = seconds / max(objects, 1)
    return [data_event(role=role, session=session, bucket=bucket, key=f"raw/2026/11/part-{i:05d}.parquet",
                       when=start + timedelta(seconds=i * step), rng=rng, nbytes=nbytes, **kwargs) for i in range(objects)]


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


def log_key(when: datetime, suffix: str, account: str = ACCOUNT) -> str:
    return (f"AWSLogs/{account}/CloudTrail/us-east-1/{when:%Y/%m/%d}/"
            f"{account}_CloudTrail_us-east-1_{when:%Y%m%dT%H%MZ}_{suffix}.json.gz")


def management_event(event_name: str, source: str, request_parameters: dict[str, Any], *, role: str = "DataScientistAlice",
                     session: str = "alice@example.com", when: datetime | None = None, seed: int = 11,
                     error_code: str | None = None) -> dict[str, Any]:
    """The CloudTrail record of one management call (the `detail` of an EventBridge CloudTrail event)."""
    rng = random.Random(seed)
    when = when or datetime(2026, 11, 22, 8, 30, tzinfo=timezone.utc)
    record = {
        "eventVersion": "1.09", "userIdentity": _identity(role, session, ACCOUNT, rng),
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "eventSource": source, "eventName": event_name,
        "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.23", "userAgent": CLI_UA,
        "requestParameters": request_parameters, "responseElements": None,
        "requestID": "".join(rng.choice("0123456789ABCDEF") for _ in range(16)),
        "eventID": str(uuid.UUID(int=rng.getrandbits(128))), "readOnly": False, "eventType": "AwsApiCall",
        "managementEvent": True, "recipientAccountId": ACCOUNT, "eventCategory": "Management",
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

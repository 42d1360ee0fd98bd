"""The model-registry guard: datasets are found by their bytes and quarantined, models pass and are registered, never overwritten."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import tarfile
import zipfile
import zlib

import boto3
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from gate.artifacts import Member, judge_archive, sniff

from tests.helpers import ROOT, drain, seed_policy_in_process, subscribe_queue

MAX = 16 * 1024 * 1024
TABLE = pa.table({"customer": ["a", "b", "c"], "balance": [1.5, 2.5, 3.5]})


def parquet() -> bytes:
    buf = io.BytesIO()
    pq.write_table(TABLE, buf)
    return buf.getvalue()


def feather_v2() -> bytes:
    buf = io.BytesIO()
    feather.write_feather(TABLE, buf)
    return buf.getvalue()


def arrow_stream() -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, TABLE.schema) as writer:
        writer.write_table(TABLE)
    return sink.getvalue().to_pybytes()


def npy(shape: tuple[int, ...], descr: str = "<f4", with_data: bool = True) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    size = 1
    for dim in shape:
        size *= dim
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + (b"\0" * size * 4 if with_data else b"")


def pickled_dataframe() -> bytes:
    """What pickle.dumps(pandas.DataFrame) starts with (protocol 4, STACK_GLOBAL of pandas.core.frame.DataFrame)."""
    name = lambda s: b"\x8c" + bytes([len(s)]) + s + b"\x94"  # noqa: E731 - SHORT_BINUNICODE + MEMOIZE
    return b"\x80\x04\x95\x00\x01\x00\x00\x00\x00\x00\x00" + name(b"pandas.core.frame") + name(b"DataFrame") + b"\x93\x94)\x81\x94."


def safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 16


def onnx() -> bytes:
    # ModelProto: ir_version=8 (field 1), producer_name="pytorch" (field 2), opset_import domain "" version 17 ...
    return b"\x08\x08\x12\x07pytorch\x1a\x032.1:" + b"\x00" * 64


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()


def tar_gz_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CSV = b"customer,balance,opened\n" + b"".join(b"c%d,%d.50,2024-01-0%d\n" % (i, i, i % 9 + 1) for i in range(50))
JSONL = b"".join(json.dumps({"customer": f"c{i}", "balance": i}).encode() + b"\n" for i in range(50))
TORCHSCRIPT = {"model/data.pkl": pickle.dumps({"weights": [0.1, 0.2]}), "model/code/__torch__.py": b"class M: pass\n",
               "model/constants.pkl": pickle.dumps(()), "model/data/0": b"\0" * 64, "model/version": b"3\n"}
SAVEDMODEL = {"export/saved_model.pb": b"\x08\x01\x12\x04serve" + b"\0" * 32, "export/variables/variables.index": b"\0" * 32,
              "export/variables/variables.data-00000-of-00001": b"\0" * 256}

DATASETS = {
    "parquet": parquet(), "feather": feather_v2(), "arrow stream": arrow_stream(), "csv": CSV, "jsonl": JSONL,
    "csv.gz": gzip.compress(CSV), "pickled DataFrame": pickled_dataframe(), "large npy": npy((5000, 1000), with_data=False),
}
MODELS = {
    "pickle": pickle.dumps({"coef": [0.5, -1.25], "intercept": 0.1}), "joblib zlib": zlib.compress(pickle.dumps({"coef": [1.0]})),
    "safetensors": safetensors(), "onnx": onnx(), "small npy": npy((16, 16)),
}


@pytest.mark.parametrize("name", list(DATASETS))
def test_datasets_are_found_by_their_bytes_whatever_their_name(name) -> None:
    judged = sniff(DATASETS[name][:65536], len(DATASETS[name]), "models/fraud/v3/model.bin", MAX)

    assert judged.kind == "dataset", judged


@pytest.mark.parametrize("name", list(MODELS))
def test_model_artifacts_pass(name) -> None:
    judged = sniff(MODELS[name][:65536], len(MODELS[name]), "models/fraud/v3/artifact", MAX)

    assert judged.kind == "model", judged


@pytest.mark.parametrize(("files", "kind"), [
    (TORCHSCRIPT, "model"), (SAVEDMODEL, "model"),
    ({"keras/config.json": b'{"class_name": "Sequential"}', "keras/model.weights.h5": b"\x89HDF\r\n\x1a\n" + b"\0" * 64}, "model"),
    ({"model.onnx": onnx(), "train.csv": CSV}, "dataset"),  # a model shipped with its training data
    ({"weights.npz/w.npy": npy((8, 8)), "embeddings.npy": npy((5000, 1000), with_data=False)}, "dataset"),
    ({"part-0.bin": parquet()}, "dataset"),  # named like weights, is a table
])
def test_archives_are_judged_by_their_members(files, kind) -> None:
    members = [Member(name, len(data), data[:4096]) for name, data in files.items()]

    assert judge_archive("zip", members, MAX).kind == kind


def test_text_that_is_not_a_table_is_not_a_dataset() -> None:
    for name, data in {"README.md": b"# Fraud model v3\n\nTrained on 2024 data, see the card.\nAUC 0.91, recall 0.8.\n",
                       "config.json": json.dumps({"layers": [1, 2], "lr": 0.01}, indent=2).encode(),
                       "vocab.txt": b"[PAD]\n[UNK]\nthe\nof\n", "merges.txt": b"#version: 0.2\nt h\nth e\n"}.items():
        assert sniff(data, len(data), name, MAX).kind == "other", name


# ---------------------------------------------------------------- the guard on S3 (moto)
REGISTRY_BUCKET, MODEL_KEY = "acme-lab-models", "models/fraud/v3/model.onnx"


@pytest.fixture
def registry(stack, tmp_path):
    from tests.s3_fence import enforce
    from tests.unit.schema_gate.test_app import MALLORY

    gate = stack.attrs["SchemaGateFunctionRole.Arn"]
    with enforce({"testing": gate, "FOOBARKEY": gate, "mallory": MALLORY}):
        seed_policy_in_process(stack, ROOT / "policy.example.yaml")
        stack.parameters["DefaultRemediationMode"] = "enforce"
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=REGISTRY_BUCKET)
        s3.put_bucket_versioning(Bucket=REGISTRY_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        stack.inbox = subscribe_queue(stack)
        yield stack


def put_and_gate(stack, key: str, body: bytes) -> dict:
    from tests.unit.schema_gate.test_app import event, run

    version = boto3.client("s3").put_object(Bucket=REGISTRY_BUCKET, Key=key, Body=body)["VersionId"]
    assert run(stack, event("object_created_pass", key, REGISTRY_BUCKET, **{"version-id": version})) == {"batchItemFailures": []}
    return {t["Key"]: t["Value"] for t in boto3.client("s3").get_object_tagging(Bucket=REGISTRY_BUCKET, Key=key,
                                                                                VersionId=version)["TagSet"]}


def test_scenario_a_dataset_in_the_model_registry_is_alerted_and_quarantined(registry) -> None:
    from tests.unit.schema_gate.test_app import denied, mallory

    # When a table is uploaded into the registry under a model's name
    tags = put_and_gate(registry, "models/fraud/v3/weights.bin", parquet())

    # Then security hears of it, it is tagged failed, and a data scientist cannot read it
    [finding] = drain(registry.inbox)
    assert finding["rule"] == "data.in-model-registry" and finding["severity"] == "high"
    assert finding["evidence"]["judged"] == "Parquet table" and len(finding["evidence"]["sha256"]) == 64
    assert finding["action"].startswith(f"bucket policy of {REGISTRY_BUCKET} now keeps objects under its gated prefixes")
    assert tags["stagewarden:validation"] == "failed"
    assert denied(lambda: mallory().get_object(Bucket=REGISTRY_BUCKET, Key="models/fraud/v3/weights.bin"))


def test_scenario_a_model_passes_is_registered_and_cannot_be_overwritten(registry) -> None:
    import hashlib

    from tests.unit.schema_gate.test_app import denied, mallory, table_items

    # Given a model artifact that passes and is registered with its checksum
    tags = put_and_gate(registry, MODEL_KEY, onnx())
    assert drain(registry.inbox) == [] and tags["stagewarden:validation"] == "passed"
    assert tags["stagewarden:validation-sha256"] == hashlib.sha256(onnx()).hexdigest()
    [item] = [i for i in table_items(registry, "StateTable") if i["pk"]["S"].startswith("registry#artifact#")]
    assert item["pk"]["S"] == f"registry#artifact#{REGISTRY_BUCKET}/{MODEL_KEY}" and item["sha256"]["S"] == tags["stagewarden:validation-sha256"]
    assert mallory().get_object(Bucket=REGISTRY_BUCKET, Key=MODEL_KEY)["Body"].read() == onnx()

    # When the same bytes are uploaded again, and then different bytes over the registered version
    same = put_and_gate(registry, MODEL_KEY, onnx())
    other = put_and_gate(registry, MODEL_KEY, onnx() + b"retrained")

    # Then the same bytes pass; the new bytes raise registry.overwrite and stay unreadable; the registration is the first
    assert same["stagewarden:validation"] == "passed" and other["stagewarden:validation"] == "failed"
    [finding] = drain(registry.inbox)
    assert finding["rule"] == "registry.overwrite" and finding["evidence"]["registered"]["sha256"] == item["sha256"]["S"]
    assert denied(lambda: mallory().get_object(Bucket=REGISTRY_BUCKET, Key=MODEL_KEY))
    assert [i["sha256"]["S"] for i in table_items(registry, "StateTable") if i["pk"]["S"].startswith("registry#")] == [item["sha256"]["S"]]


def test_allowed_keys_are_not_judged(registry) -> None:
    tags = put_and_gate(registry, "models/fraud/v3/README.md", CSV)  # a table, but the allow list names the key

    assert tags["stagewarden:validation"] == "passed" and drain(registry.inbox) == []


def test_a_registry_may_not_overlap_a_contract() -> None:
    from stage_policy.loader import PolicyError, loads

    with pytest.raises(PolicyError, match=r"model_registries\[0\]\.prefix.*overlaps contracts\[0\]"):
        loads("""
framework: two-stage
contracts:
  - {name: t, stage: prod-discovery, prefix: landing/, format: csv, columns: [{name: a, type: int}]}
model_registries:
  - {name: m, stage: prod-discovery, prefix: landing/models/}
""")


def test_max_array_bytes_decides_when_an_array_is_data() -> None:
    weights = npy((16, 16))  # 1 KiB of float32

    assert sniff(weights, len(weights), "w.npy", MAX).kind == "model"
    assert sniff(weights, len(weights), "w.npy", 512).kind == "dataset"


@pytest.mark.parametrize(("key", "body", "passed"), [
    ("models/fraud/v4/model.pt", zip_of(TORCHSCRIPT), True),
    ("models/fraud/v4/export.tar.gz", tar_gz_of(SAVEDMODEL), True),
    ("models/fraud/v4/bundle.tar.gz", tar_gz_of({"model.onnx": onnx(), "data/train.csv": CSV}), False),
    ("models/fraud/v4/weights.zip", zip_of({"emb.npy": npy((5000, 1000), with_data=False)}), False),
], ids=["torchscript zip", "savedmodel tar.gz", "tar.gz with a csv", "zip with a large array"])
def test_archives_in_s3_are_listed_and_judged(registry, key, body, passed) -> None:
    tags = put_and_gate(registry, key, body)

    assert tags["stagewarden:validation"] == ("passed" if passed else "failed")
    assert [f["rule"] for f in drain(registry.inbox)] == ([] if passed else ["data.in-model-registry"])

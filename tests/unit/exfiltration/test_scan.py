"""`stagewarden scan cloudtrail` never prints a traceback: whatever a file holds, it becomes a finding and the scan goes on."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from stagewarden.cli import main
from stagewarden.trailgen import bulk_download, log_file, management_event

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)


def download(n: int = 1200) -> list[dict]:
    return bulk_download(role="DataScientistAlice", session="alice@example.com", bucket="acme-lab-data", objects=n, start=T0,
                         seconds=240, nbytes=1000, vpce="vpce-0a1b2c3d4e5f67890", ip="10.0.0.1")


def scan_folder(folder, capsys) -> tuple[int, list[dict], str]:
    code = main(["scan", "cloudtrail", str(folder)])
    out = capsys.readouterr()
    return code, [json.loads(line) for line in out.out.splitlines()], out.err


def test_hostile_records_and_files_become_findings_not_tracebacks(tmp_path, capsys) -> None:
    # Given a folder with a good download, a file of hostile records, a broken link, garbage and a truncated gzip
    (tmp_path / "a-good.json.gz").write_bytes(log_file(download()))
    hostile = [{"eventName": ["GetObject"]}, 7, None, {"eventSource": "s3.amazonaws.com", "eventName": "GetObject",
                                                       "requestParameters": {"bucketName": {"x": 1}}},
               management_event("PutBucketPolicy", "s3.amazonaws.com", {"bucketName": "b", "bucketPolicy": {"Statement": [
                   {"Effect": "Allow", "Principal": {"AWS": [f"{i:012d}" for i in range(5000)]}, "Action": "*"}]}})]
    (tmp_path / "b-hostile.json").write_bytes(json.dumps({"Records": hostile}).encode())
    (tmp_path / "c-dangling.json.gz").symlink_to(tmp_path / "nowhere")
    (tmp_path / "d-garbage.json").write_bytes(b"\x00\xff not json at all")
    (tmp_path / "e-truncated.json.gz").write_bytes(log_file(download(50))[:300])

    code, findings, err = scan_folder(tmp_path, capsys)

    # Then every file is accounted for, the download is still found, and nothing crashed
    assert code == 0 and "Traceback" not in err
    by_rule = {}
    for f in findings:
        by_rule.setdefault(f["rule"], []).append(f)
    assert "exfil.bulk-download" in by_rule and "exfil.bucket-policy-external" in by_rule
    malformed = {f["resource"].rsplit("/", 1)[-1]: f for f in by_rule["input.malformed"]}
    assert set(malformed) == {"b-hostile.json", "c-dangling.json.gz", "d-garbage.json", "e-truncated.json.gz"}
    assert malformed["b-hostile.json"]["evidence"]["record_indexes"] == [0, 1, 2, 3]
    assert "cannot read" in malformed["c-dangling.json.gz"]["evidence"]["issues"][0]["detail"]


def test_an_internal_failure_on_one_file_is_reported_and_the_scan_goes_on(tmp_path, capsys, monkeypatch) -> None:
    import stagewarden.scan as scan_module

    (tmp_path / "a.json.gz").write_bytes(log_file(download(10)))
    (tmp_path / "b.json.gz").write_bytes(log_file(download()))
    real = scan_module.iter_batches

    def failing_once(fh, stats):
        if fh.name.endswith("a.json.gz"):
            raise RuntimeError("simulated bug")
        return real(fh, stats)

    monkeypatch.setattr(scan_module, "iter_batches", failing_once)

    code, findings, err = scan_folder(tmp_path, capsys)

    assert code == 0 and "Traceback" not in err
    assert {f["rule"] for f in findings} == {"input.malformed", "exfil.bulk-download"}
    assert [f["resource"].rsplit("/", 1)[-1] for f in findings if f["rule"] == "input.malformed"] == ["a.json.gz"]
    bad = next(f for f in findings if f["rule"] == "input.malformed")
    assert "processing failed (RuntimeError: simulated bug)" in bad["evidence"]["issues"][0]["detail"]

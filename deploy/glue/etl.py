"""Placeholder Glue job for taskbridge's batched ETL.

The batcher starts it with --manifest s3://<data bucket>/manifests/<batchId>.json and
--file_count N. Replace the body with the real transformation; keep reading the
manifest, and each file at the version it names, so a run processes exactly the
files of its batch: a landing key overwritten since its event is another file, in
another run.
"""
import json
import sys

import boto3
from awsglue.utils import getResolvedOptions


def read_file(s3, f):
    """The bytes of one manifest entry: the version it names, else the key as it is
    (a bucket that keeps no versions has no versionId)."""
    extra = {"VersionId": f["versionId"]} if f.get("versionId") else {}
    return s3.get_object(Bucket=f["bucket"], Key=f["key"], **extra)["Body"].read()


def main():
    args = getResolvedOptions(sys.argv, ["manifest", "file_count"])
    s3 = boto3.client("s3")
    bucket, key = args["manifest"][len("s3://"):].split("/", 1)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert len(manifest["files"]) == int(args["file_count"]), "manifest and --file_count disagree"
    for f in manifest["files"]:
        body = read_file(s3, f)
        version = f" version {f['versionId']}" if f.get("versionId") else ""
        print(f"would process s3://{f['bucket']}/{f['key']}{version} ({len(body)} bytes)")


if __name__ == "__main__":
    main()

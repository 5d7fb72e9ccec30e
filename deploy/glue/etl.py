"""Placeholder Glue job for taskbridge's batched ETL.

The batcher starts it with --manifest s3://<data bucket>/manifests/<batchId>.json and
--file_count N. Replace the body with the real transformation; keep reading the
manifest, so a run processes exactly the files of its batch.
"""
import json
import sys

import boto3
from awsglue.utils import getResolvedOptions

args = getResolvedOptions(sys.argv, ["manifest", "file_count"])
bucket, key = args["manifest"][len("s3://"):].split("/", 1)
manifest = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
assert len(manifest["files"]) == int(args["file_count"]), "manifest and --file_count disagree"
for f in manifest["files"]:
    print(f"would process s3://{f['bucket']}/{f['key']} ({f['size']} bytes)")

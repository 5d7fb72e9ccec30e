#!/usr/bin/env python3
"""The publish step of the ETL chain, as an exec job: the task's detail (without its
token) arrives on stdin as JSON; what this prints on stdout is the task's output.
Exit 75 asks for a retry; any other non-zero exit fails the task as
report.Exit<N>, with the end of stderr as the cause."""
import json
import sys

detail = json.load(sys.stdin)
batch_id = detail.get("batchId")
if not batch_id:
    print("no batchId in the event", file=sys.stderr)
    sys.exit(2)
print(json.dumps({
    "batchId": batch_id,
    "fileCount": detail.get("fileCount", 0),
    "manifest": detail.get("manifest"),
    "published": True,
}))

#!/usr/bin/env python3
"""The heavy step of the nightly workflow, as an exec job. stdin: the task's detail
(without its token) as JSON; stdout: the task's output. It may run for hours: the
worker keeps the message invisible and the task alive while it runs, and stops the
whole process group (SIGTERM, then SIGKILL) at the queue's timeout or on shutdown;
the message is then delivered again and the step runs anew."""
import json
import signal
import sys
import time

detail = json.load(sys.stdin)
options = detail.get("input") or {}
seconds = float(options.get("seconds", 120))
if seconds < 0:
    print(f"seconds must not be negative, got {seconds}", file=sys.stderr)
    sys.exit(2)

signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
began = time.monotonic()
rows = 0
while time.monotonic() - began < seconds:
    time.sleep(min(1.0, seconds))
    rows += 1000
print(json.dumps({"date": detail.get("date"), "rows": rows, "seconds": round(time.monotonic() - began, 1)}))

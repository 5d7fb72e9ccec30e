#!/usr/bin/env python3
"""The heavy step of the nightly workflow, as an exec job. stdin: the task's detail
(without its token) as JSON; stdout: the task's output. It may run for hours: the
worker keeps the message invisible and the task alive while it runs, and stops the
whole process group (SIGTERM, then SIGKILL) at the queue's timeout, on shutdown, and
when the execution is stopped or times out.

It checkpoints its progress every second into the file named by
TASKBRIDGE_CHECKPOINT_FILE (the queue sets "checkpoint": true): when the message is
delivered again (a crash, a deploy past the stop timeout), it resumes where the last
checkpoint left it instead of starting over."""
import json
import os
import signal
import sys
import time

detail = json.load(sys.stdin)
options = detail.get("input") or {}
seconds = float(options.get("seconds", 120))
if seconds < 0:
    print(f"seconds must not be negative, got {seconds}", file=sys.stderr)
    sys.exit(2)

checkpoint_file = os.environ.get("TASKBRIDGE_CHECKPOINT_FILE")
done, rows = 0.0, 0
if checkpoint_file and os.path.exists(checkpoint_file):
    with open(checkpoint_file) as f:
        last = json.load(f)
    done, rows = float(last["done"]), int(last["rows"])
    print(f"resuming at {done:.0f} s, {rows} rows", file=sys.stderr)


def checkpoint():
    """Write a temporary file and rename it: the worker never reads half of one."""
    if checkpoint_file:
        with open(checkpoint_file + ".tmp", "w") as f:
            json.dump({"done": done, "rows": rows}, f)
        os.replace(checkpoint_file + ".tmp", checkpoint_file)


signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the last checkpoint stands
resumed_at = done
while done < seconds:
    step = min(1.0, seconds - done)
    time.sleep(step)
    done += step
    rows += 1000
    checkpoint()
print(json.dumps({"date": detail.get("date"), "rows": rows, "seconds": round(done, 1), "resumedAt": round(resumed_at, 1)}))

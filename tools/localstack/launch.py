#!/usr/bin/env python3
"""LocalStack's runtime with the heartbeat race of its Step Functions interpreter
fixed, for `scripts/localstack.sh` (the tests' harness, never part of the product).

moto 5.2.5 vendors this interpreter, so LocalStack 4.14.0 has the same race as
moto (tools/moto/server.py): for a waitForTaskToken task it puts the event first
and only then sets up the task's heartbeat wait. A worker that answers in between:
- with SendTaskSuccess/Failure on a task with HeartbeatSeconds: the new wait never
  hears of the outcome and the task fails after HeartbeatSeconds. Here the wait
  starts notified when the outcome is already in.
- with SendTaskHeartbeat gets InvalidToken for a live token (AWS accepts it). Here
  a heartbeat of a task that has no outcome and no wait yet is accepted; the wait,
  when it starts, has its full HeartbeatSeconds.
The same patch as moto's, on LocalStack's own CallbackEndpoint. It checks first
that the class still has what the patch relies on, and exits if not, rather than
run unpatched.

Usage: python tools/localstack/launch.py (as `python -m localstack.runtime.main`,
which it then runs, in this process: LocalStack serves Step Functions in-process).
"""
import os
import runpy
import sys

from localstack.services.stepfunctions.asl.eval.callback import callback


def patch_heartbeat_race():
    cls = callback.CallbackEndpoint
    missing = [m for m in ("setup_heartbeat_endpoint", "notify_heartbeat", "get_outcome", "notify")
               if not callable(getattr(cls, m, None))]
    probe = cls(callback_id="probe")
    if getattr(probe, "_heartbeat_endpoint", 0) is not None:
        missing.append("_heartbeat_endpoint (None before the wait)")
    if missing:
        sys.exit(f"tools/localstack/launch.py: {cls.__module__}.CallbackEndpoint has changed "
                 f"(no {', '.join(missing)}); not starting LocalStack unpatched")

    setup = cls.setup_heartbeat_endpoint

    def setup_heartbeat_endpoint(self, heartbeat_seconds):
        endpoint = setup(self, heartbeat_seconds)
        if self.get_outcome() is not None:
            endpoint.notify()
        return endpoint

    cls.setup_heartbeat_endpoint = setup_heartbeat_endpoint

    notify_heartbeat = cls.notify_heartbeat

    def notify_heartbeat_early(self):
        if self._heartbeat_endpoint is None and self.get_outcome() is None:
            return True  # in the pool and not answered yet: the token is live
        return notify_heartbeat(self)

    cls.notify_heartbeat = notify_heartbeat_early

    # Prove both parts on a fresh endpoint, so a changed class fails here, not in a test.
    ep = cls(callback_id="probe")
    early = ep.notify_heartbeat()
    ep.notify(callback.CallbackOutcomeSuccess(callback_id="probe", output="{}"))
    late = ep.setup_heartbeat_endpoint(heartbeat_seconds=0.01).clear_and_wait()
    if not (early and late):
        sys.exit(f"tools/localstack/launch.py: the patch of {cls.__module__}.CallbackEndpoint "
                 f"is not in effect (early heartbeat {early}, outcome before the wait {late})")
    print(f"launch.py: {cls.__module__}.CallbackEndpoint patched (pid {os.getpid()})",
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    patch_heartbeat_race()
    sys.path[0] = os.getcwd()  # as with -m: the working directory, not this script's
    runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)

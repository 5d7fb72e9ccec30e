#!/usr/bin/env python3
"""moto server with two races of moto 5.2.5's Step Functions interpreter fixed, for
the tests, the demo and `scripts/emulator.sh` (never part of the product).

For a task with HeartbeatSeconds, moto puts the event first and only then sets up
the heartbeat wait. A worker that answers in between (within a few milliseconds):
- with SendTaskSuccess/Failure sets the outcome, but the new heartbeat wait never
  hears of it: the task hangs for HeartbeatSeconds and fails with
  States.HeartbeatTimeout. Here the heartbeat wait starts notified when the outcome
  is already in.
- with SendTaskHeartbeat gets InvalidToken, as if the task were not there, though
  its token is live (AWS accepts it): a job that proves its token first drops the
  message as forged and the task hangs. Here a heartbeat of a task that has no
  outcome and whose wait is not set up yet is accepted; the wait, when it starts,
  has its full HeartbeatSeconds.
tools/tfcheck/moto_stubbed.py applies the same fixes.

One race of its SQS is fixed too: ReceiveMessage checks that a message is visible
and marks it received without a lock, so two receives at once on a queue can both
take the same message (receive counts 1 and 2 at the same moment; SQS hands a
received message to one receive until its visibility ends). A worker with several
receives in flight then ran one message twice at once: the batcher put one file in
two batches. Here the receives of a queue take turns, except while they wait.

Its DeleteMessage rebuilds the queue's message list without a lock too: two deletes
of one queue at once (or a delete beside a send) can write back a list that still
holds a message whose delete was answered success, or drop one just sent (16 callers
deleting 1,000 received messages lost 30-140 of them). Here a delete holds the
queue's lock that sends hold. Stock moto keeps the race: make test-stock-moto meets it.

And one race of its S3: a conditional PutObject (If-None-Match: * or If-Match) looks
the key up and writes it as two steps without a lock, so two conditional writes of
one key at once can both pass the check and both answer 200 (S3 lets one win and
answers the other 412 PreconditionFailed, or 409 ConditionalRequestConflict while the
first is in flight). The batcher's claims (internal/batch/claim.go) rely on one
winner. Here conditional writes take turns. Stock moto 5.2.5 otherwise honours both
headers on PutObject as S3 does: 412 PreconditionFailed when the key exists (If-None-
Match) or its ETag differs (If-Match), 404 NoSuchKey for If-Match of a missing key;
it never answers 409.

Usage: python3 tools/moto/server.py [moto_server's arguments, e.g. -H 127.0.0.1 -p 5000]
"""
import sys
import threading

from moto.s3 import responses as s3_responses
from moto.server import main
from moto.sqs import models as sqs_models
from moto.stepfunctions.parser.asl.eval.callback import callback


def patch_heartbeat_race():
    setup = callback.CallbackEndpoint.setup_heartbeat_endpoint

    def setup_heartbeat_endpoint(self, heartbeat_seconds):
        endpoint = setup(self, heartbeat_seconds)
        if self.get_outcome() is not None:
            endpoint.notify()
        return endpoint

    callback.CallbackEndpoint.setup_heartbeat_endpoint = setup_heartbeat_endpoint

    notify_heartbeat = callback.CallbackEndpoint.notify_heartbeat

    def notify_heartbeat_early(self):
        if self._heartbeat_endpoint is None and self.get_outcome() is None:
            return True  # in the pool and not answered yet: the token is live
        return notify_heartbeat(self)

    callback.CallbackEndpoint.notify_heartbeat = notify_heartbeat_early


def patch_receive_race():
    guard = threading.Lock()

    def receive_lock(queue):
        with guard:
            if not hasattr(queue, "_receive_lock"):
                queue._receive_lock = threading.Lock()
            return queue._receive_lock

    receive = sqs_models.SQSBackend.receive_message

    def receive_message(self, queue_name, *args, **kwargs):
        try:
            lock = receive_lock(self.get_queue(queue_name))
        except Exception:
            return receive(self, queue_name, *args, **kwargs)  # moto's own error
        with lock:
            return receive(self, queue_name, *args, **kwargs)

    sqs_models.SQSBackend.receive_message = receive_message

    wait = sqs_models.Queue.wait_for_messages

    def wait_for_messages(self, timeout):
        lock = receive_lock(self)
        lock.release()  # a long poll waits without holding up the other receives
        try:
            wait(self, timeout)
        finally:
            lock.acquire()

    sqs_models.Queue.wait_for_messages = wait_for_messages


def patch_delete_race():
    delete = sqs_models.Queue.delete_message

    def delete_message(self, receipt_handle):
        # The queue's own lock (a Condition over an RLock), which sends hold too.
        with self._messages_lock:
            return delete(self, receipt_handle)

    sqs_models.Queue.delete_message = delete_message


def patch_conditional_put_race():
    guard = threading.Lock()
    put_object = s3_responses.S3Response.put_object

    def conditional_put_object(self):
        if self.headers.get("If-None-Match") is None and self.headers.get("If-Match") is None:
            return put_object(self)
        with guard:
            return put_object(self)

    s3_responses.S3Response.put_object = conditional_put_object


if __name__ == "__main__":
    patch_heartbeat_race()
    patch_receive_race()
    patch_delete_race()
    patch_conditional_put_race()
    main(sys.argv[1:])

"""moto server with the few calls stubbed that terraform's AWS provider 5.100.0
makes and moto 5.2.5 does not implement, and the few answers corrected that moto
gives differently from AWS where a plan after apply would see them. Test harness
of `make tf-check` only: never part of the product.

    python moto_stubbed.py PORTFILE

Binds 127.0.0.1 on a free port, writes the port to PORTFILE, serves until SIGTERM.
Each stub below names the provider call that needs it; everything else is moto.
"""

import io
import json
import os
import signal
import sys

os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

from werkzeug.serving import make_server  # noqa: E402

from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

STUBS = {}
SEEN = set()


def stub(target):
    def register(fn):
        STUBS[target] = fn
        return fn

    return register


def json_response(start_response, body, status="200 OK"):
    data = json.dumps(body).encode()
    start_response(
        status,
        [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(data)))],
    )
    return [data]


class Stubbed:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        fn = STUBS.get(target)
        if fn is None:
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        req = json.loads(raw or b"{}")
        if target not in SEEN:
            SEEN.add(target)
            print(f"tfcheck stub: {target}", file=sys.stderr, flush=True)
        return fn(self.app, environ, start_response, req)


# Step Functions: the provider validates every definition at plan time. moto has no
# validator; ASL errors still surface when moto parses the definition at create.
@stub("AWSStepFunctions.ValidateStateMachineDefinition")
def validate_definition(app, environ, start_response, req):
    return json_response(start_response, {"result": "OK", "diagnostics": []})


# Step Functions: read after create/update to find published versions (we publish none).
@stub("AWSStepFunctions.ListStateMachineVersions")
def list_versions(app, environ, start_response, req):
    return json_response(start_response, {"stateMachineVersions": []})


# Application Auto Scaling: the provider tags scalable targets (default_tags) and
# reads the tags back; moto 5.2.5 has no tagging for this service.
AAS_TAGS = {}


@stub("AnyScaleFrontendService.TagResource")
def aas_tag(app, environ, start_response, req):
    AAS_TAGS.setdefault(req.get("ResourceARN", ""), {}).update(req.get("Tags", {}))
    return json_response(start_response, {})


@stub("AnyScaleFrontendService.UntagResource")
def aas_untag(app, environ, start_response, req):
    for key in req.get("TagKeys", []):
        AAS_TAGS.get(req.get("ResourceARN", ""), {}).pop(key, None)
    return json_response(start_response, {})


# The provider tags on create (RegisterScalableTarget's Tags, which moto drops).
@stub("AnyScaleFrontendService.RegisterScalableTarget")
def aas_register(app, environ, start_response, req):
    status, headers, body = call_app(app, environ)
    if status.startswith("200") and req.get("Tags"):
        arn = json.loads(body or b"{}").get("ScalableTargetARN", "")
        AAS_TAGS.setdefault(arn, {}).update(req["Tags"])
    start_response(status, headers)
    return [body]


# Kept, so that a second plan does not see the provider's default_tags as missing.
@stub("AnyScaleFrontendService.ListTagsForResource")
def aas_list_tags(app, environ, start_response, req):
    return json_response(start_response, {"Tags": AAS_TAGS.get(req.get("ResourceARN", ""), {})})


# SQS: moto 5.2.5 accepts RedriveAllowPolicy in SetQueueAttributes but drops it, and
# aws_sqs_queue_redrive_allow_policy waits until GetQueueAttributes shows it (the
# apply hangs until its timeout). Keep it here and add it to the answers.
REDRIVE_ALLOW = {}


def call_app(app, environ):
    captured = {}

    def start(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers
        return lambda _: None

    body = b"".join(app(environ, start))
    return captured["status"], captured["headers"], body


def queue_key(url):
    return url.rstrip("/").rsplit("/", 1)[-1]


@stub("AmazonSQS.SetQueueAttributes")
def sqs_set(app, environ, start_response, req):
    attrs = req.get("Attributes", {})
    if "RedriveAllowPolicy" in attrs:
        REDRIVE_ALLOW[queue_key(req["QueueUrl"])] = attrs["RedriveAllowPolicy"]
    return app(environ, start_response)


# SQS: moto 5.2.5 answers RedrivePolicy as JSON with spaces, where SQS answers the
# compact JSON the provider sent, so a second plan shows a whitespace change on every
# queue: answer it compact.
@stub("AmazonSQS.GetQueueAttributes")
def sqs_get(app, environ, start_response, req):
    names = req.get("AttributeNames", [])
    policy = REDRIVE_ALLOW.get(queue_key(req.get("QueueUrl", "")))
    rest = [n for n in names if n != "RedriveAllowPolicy"]
    if names and not rest:  # moto answers InvalidAttributeName to this name alone
        return json_response(start_response, {"Attributes": {"RedriveAllowPolicy": policy} if policy else {}})
    if rest != names:
        raw = json.dumps(dict(req, AttributeNames=rest)).encode()
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(raw), str(len(raw))
    status, headers, body = call_app(app, environ)
    if status.startswith("200"):
        out = json.loads(body or b"{}")
        attrs = out.get("Attributes", {})
        if policy and ("RedriveAllowPolicy" in names or "All" in names):
            attrs["RedriveAllowPolicy"] = policy
        if "RedrivePolicy" in attrs:
            attrs["RedrivePolicy"] = json.dumps(json.loads(attrs["RedrivePolicy"]), separators=(",", ":"))
        if attrs:
            out["Attributes"] = attrs
        body = json.dumps(out).encode()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
    start_response(status, headers)
    return [body]


@stub("AmazonSQS.DeleteQueue")
def sqs_delete(app, environ, start_response, req):
    REDRIVE_ALLOW.pop(queue_key(req.get("QueueUrl", "")), None)
    return app(environ, start_response)


# Glue: moto 5.2.5 answers ExecutionClass STANDARD for a job created without one,
# which the provider plans to remove on every plan; answer it only when it was set.
CLASSLESS_JOBS = set()


@stub("AWSGlue.CreateJob")
@stub("AWSGlue.UpdateJob")
def glue_put_job(app, environ, start_response, req):
    name = req.get("Name") or req.get("JobName", "")
    update = req.get("JobUpdate") or req
    if update.get("ExecutionClass"):
        CLASSLESS_JOBS.discard(name)
    else:
        CLASSLESS_JOBS.add(name)
    return app(environ, start_response)


@stub("AWSGlue.GetJob")
def glue_get_job(app, environ, start_response, req):
    status, headers, body = call_app(app, environ)
    if status.startswith("200") and req.get("JobName") in CLASSLESS_JOBS:
        out = json.loads(body or b"{}")
        out.get("Job", {}).pop("ExecutionClass", None)
        body = json.dumps(out).encode()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
    start_response(status, headers)
    return [body]


# Step Functions: moto's race of a heartbeat wait set up after the task's answer is
# fixed the same way as for the tests (tools/moto/server.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "moto"))
from server import patch_heartbeat_race  # noqa: E402


# SQS: moto 5.2.5's SetQueueAttributes clears the queue's Policy when the call does
# not name it, where SQS changes only the attributes named: the set-queue-attributes
# of raise_queue_size_with_aws_cli, after aws_sqs_queue_policy, would drop every
# queue policy. Keep it.
def patch_policy_kept():
    from moto.sqs.models import Queue

    set_attributes = Queue._set_attributes

    def keep_policy(self, attributes, now=None):
        if "Policy" not in attributes and hasattr(self, "_policy_json"):
            attributes = dict(attributes, Policy=self.policy)
        return set_attributes(self, attributes, now)

    Queue._set_attributes = keep_policy


# S3: moto 5.2.5 keeps a bucket's EventBridgeConfiguration but leaves it out of
# GetBucketNotificationConfiguration, so the provider plans eventbridge = true again
# on every plan. Answer it, as S3 does (an empty element).
def patch_s3_eventbridge():
    from moto.core.responses import ActionResult
    from moto.s3.responses import S3Response

    get_notification = S3Response.get_bucket_notification

    def with_eventbridge(self):
        config = self.backend.get_bucket_notification_configuration(self.bucket_name)
        if not config or config.event_bridge is None:
            return get_notification(self)
        serialized = self.serialized

        def add(result):
            return serialized(ActionResult(dict(result.result, EventBridgeConfiguration={})))

        self.serialized = add
        try:
            return get_notification(self)
        finally:
            del self.serialized

    S3Response.get_bucket_notification = with_eventbridge


# ECS: moto 5.2.5 drops a service's availabilityZoneRebalancing, which the provider
# sends (DISABLED by default) and plans again on every plan: keep what was sent.
AZ_REBALANCING = {}


@stub("AmazonEC2ContainerServiceV20141113.CreateService")
@stub("AmazonEC2ContainerServiceV20141113.UpdateService")
def ecs_put_service(app, environ, start_response, req):
    if "availabilityZoneRebalancing" in req:
        AZ_REBALANCING[req.get("serviceName") or req.get("service", "")] = req["availabilityZoneRebalancing"]
    return app(environ, start_response)


@stub("AmazonEC2ContainerServiceV20141113.DescribeServices")
def ecs_describe_services(app, environ, start_response, req):
    status, headers, body = call_app(app, environ)
    if status.startswith("200") and AZ_REBALANCING:
        out = json.loads(body or b"{}")
        for svc in out.get("services", []):
            value = AZ_REBALANCING.get(svc.get("serviceName")) or AZ_REBALANCING.get(svc.get("serviceArn"))
            if value:
                svc.setdefault("availabilityZoneRebalancing", value)
        body = json.dumps(out).encode()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
    start_response(status, headers)
    return [body]


def main():
    patch_heartbeat_race()
    patch_policy_kept()
    patch_s3_eventbridge()
    portfile = sys.argv[1]
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        "127.0.0.1", 0, Stubbed(app), threaded=True, request_handler=MotoRequestHandler
    )
    # moto's Step Functions executions call the other services through this port.
    os.environ["MOTO_PORT"] = str(server.port)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(server.port))
    os.replace(portfile + ".tmp", portfile)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()

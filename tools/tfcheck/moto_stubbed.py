"""moto server with the few calls stubbed that terraform's AWS provider 5.100.0
makes and moto 5.2.5 does not implement. Test harness of `make tf-check` only:
never part of the product.

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
@stub("AnyScaleFrontendService.TagResource")
@stub("AnyScaleFrontendService.UntagResource")
def aas_tag(app, environ, start_response, req):
    return json_response(start_response, {})


@stub("AnyScaleFrontendService.ListTagsForResource")
def aas_list_tags(app, environ, start_response, req):
    return json_response(start_response, {"Tags": {}})


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


@stub("AmazonSQS.GetQueueAttributes")
def sqs_get(app, environ, start_response, req):
    names = req.get("AttributeNames", [])
    policy = REDRIVE_ALLOW.get(queue_key(req.get("QueueUrl", "")))
    if "RedriveAllowPolicy" not in names and "All" not in names:
        return app(environ, start_response)
    rest = [n for n in names if n != "RedriveAllowPolicy"]
    if not rest:  # moto answers InvalidAttributeName to this name alone
        return json_response(start_response, {"Attributes": {"RedriveAllowPolicy": policy} if policy else {}})
    raw = json.dumps(dict(req, AttributeNames=rest)).encode()
    environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(raw), str(len(raw))
    status, headers, body = call_app(app, environ)
    if status.startswith("200") and policy:
        out = json.loads(body or b"{}")
        out.setdefault("Attributes", {})["RedriveAllowPolicy"] = policy
        body = json.dumps(out).encode()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
    start_response(status, headers)
    return [body]


@stub("AmazonSQS.DeleteQueue")
def sqs_delete(app, environ, start_response, req):
    REDRIVE_ALLOW.pop(queue_key(req.get("QueueUrl", "")), None)
    return app(environ, start_response)


# Step Functions: moto's race of a heartbeat wait set up after the task's answer is
# fixed the same way as for the tests (tools/moto/server.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "moto"))
from server import patch_heartbeat_race  # noqa: E402


def main():
    patch_heartbeat_race()
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

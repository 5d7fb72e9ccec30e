"""Reads the stack that `make tf-check` applied back from the emulator, and drives
the worker proof. Test harness only.

    stack.py net                      make a VPC, subnet and security group; print "subnet sg"
    stack.py env SERVICE OUTPUTS      the container environment of SERVICE's task definition,
                                      as KEY=VALUE lines (OUTPUTS: terraform output -json)
    stack.py policies DIR OUTPUTS     every IAM policy of the stack (roles' inline and attached
                                      policies, queue and topic policies) as DIR/<name>.json
    stack.py lint DIR FINDINGS        fail on parliament's findings (FINDINGS: its --json lines)
    stack.py delivery OUTPUTS         every rule target of the stack has an explicit retry policy
                                      and the events DLQ; the CloudWatch alarms on each rule's
                                      FailedInvocations and on the events DLQ exist
    stack.py land OUTPUTS N           put N objects into the landing bucket
    stack.py batch OUTPUTS TIMEOUT    wait for a manifest and a started Glue run; print them
    stack.py report URI N             the cookies report at URI has N people and their total
    stack.py empty OUTPUTS            delete what the workers wrote (every version) from both
                                      buckets, so that destroy finds them empty

Talks to AWS_ENDPOINT_URL with the emulator's credentials from the environment.
"""

import json
import os
import sys
import time

import boto3


def client(name):
    return boto3.client(
        name,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )


def outputs(path):
    with open(path) as f:
        return {k: v["value"] for k, v in json.load(f).items()}


def net():
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="tf-check", Description="tf-check", VpcId=vpc)["GroupId"]
    print(subnet, sg)


def env(service, out_path):
    arn = outputs(out_path)["task_definitions"][service]
    td = client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    (container,) = td["containerDefinitions"]
    for e in container["environment"]:
        if "\n" in e["value"]:
            sys.exit(f"{e['name']} has a newline")
        print(f"{e['name']}={e['value']}")


def policies(out_dir, out_path):
    out = outputs(out_path)
    stack = out["event_bus"]
    iam = client("iam")
    os.makedirs(out_dir, exist_ok=True)
    n = 0

    def write(name, doc):
        nonlocal n
        if isinstance(doc, str):
            doc = json.loads(doc)
        with open(os.path.join(out_dir, name + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
        n += 1

    trusts = 0

    def check_trust(role, doc):
        # Trust policies name a Principal and no Resource: parliament reads identity
        # policies and would call them malformed. Checked here instead.
        nonlocal trusts
        if isinstance(doc, str):
            doc = json.loads(doc)
        for st in doc["Statement"]:
            services = st.get("Principal", {}).get("Service")
            if st.get("Effect") != "Allow" or st.get("Action") != "sts:AssumeRole" or not services:
                sys.exit(f"role {role}: trust statement is not an AssumeRole by a service: {st}")
            for svc in [services] if isinstance(services, str) else services:
                if not svc.endswith(".amazonaws.com"):
                    sys.exit(f"role {role}: trusts {svc}")
        trusts += 1

    for role in iam.list_roles()["Roles"]:
        name = role["RoleName"]
        if not name.startswith(stack + "-"):
            continue
        check_trust(name, role["AssumeRolePolicyDocument"])
        for p in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            write(f"role-{name}-{p}", iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"])
        for a in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            pol = iam.get_policy(PolicyArn=a["PolicyArn"])["Policy"]
            ver = iam.get_policy_version(PolicyArn=a["PolicyArn"], VersionId=pol["DefaultVersionId"])
            write(f"role-{name}-attached-{a['PolicyName']}", ver["PolicyVersion"]["Document"])
    sqs = client("sqs")
    for name, url in out["queues"].items():
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get("Attributes", {})
        if "Policy" not in attrs:
            sys.exit(f"queue {name} has no policy")
        write(f"queue-{name}", attrs["Policy"])
    if out.get("events_dlq"):
        attrs = sqs.get_queue_attributes(QueueUrl=out["events_dlq"], AttributeNames=["Policy"]).get("Attributes", {})
        if "Policy" not in attrs:
            sys.exit("the events DLQ has no policy")
        write("queue-events-dlq", attrs["Policy"])
    topic = client("sns").get_topic_attributes(TopicArn=out["etl_error_topic"])["Attributes"]
    write("topic-etl-error", topic["Policy"])
    roles = [r for r in out["task_roles"]]
    print(f"{n} policies of stack {stack} for parliament (task roles: {', '.join(roles)}); "
          f"{trusts} trust policies: AssumeRole by an AWS service only")


# parliament's findings that fail the check: a grant AWS would not honour or a
# policy it would not accept. (Style findings such as RESOURCE_STAR on actions
# that take no resource are not failures.)
FAIL = ("RESOURCE_MISMATCH", "UNKNOWN_", "MALFORMED", "INVALID_", "BAD_PATTERN")


def lint(out_dir, findings_path):
    bad = []
    with open(findings_path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            finding = json.loads(line)
            issue = finding.get("issue", "")
            where = os.path.basename(str(finding.get("location", {}).get("filepath", "?")))
            text = f"{issue} {where}: {json.dumps(finding.get('detail'))}"
            print(("FAIL " if issue.startswith(FAIL) else "note ") + text)
            if issue.startswith(FAIL):
                bad.append(text)
    count = len([p for p in os.listdir(out_dir) if p.endswith(".json")])
    if bad:
        sys.exit(f"parliament: {len(bad)} finding(s) AWS would reject, in {count} policies")
    print(f"parliament: no resource mismatch, unknown action or malformed policy in {count} policies")


def delivery(out_path):
    out = outputs(out_path)
    stack = out["event_bus"]
    if not out.get("events_dlq"):
        sys.exit("the stack has no events DLQ (output events_dlq)")
    dlq_arn = client("sqs").get_queue_attributes(QueueUrl=out["events_dlq"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = client("events")
    targets = 0
    rules = []
    for bus in (stack, "default"):
        for rule in events.list_rules(EventBusName=bus, NamePrefix=stack + "-")["Rules"]:
            rules.append(rule["Name"])
            for t in events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]:
                if t.get("DeadLetterConfig", {}).get("Arn") != dlq_arn:
                    sys.exit(f"rule {rule['Name']}: target {t['Id']} has no events DLQ: {t}")
                if "MaximumEventAgeInSeconds" not in t.get("RetryPolicy", {}):
                    sys.exit(f"rule {rule['Name']}: target {t['Id']} has no explicit retry policy: {t}")
                targets += 1
    if targets < len(out["queues"]) + 1:  # each queue's rule, and etl-error's
        sys.exit(f"{targets} targets read back, want at least {len(out['queues']) + 1}")
    alarms = client("cloudwatch").describe_alarms(AlarmNamePrefix=stack + "-")["MetricAlarms"]
    failed = [a for a in alarms if a["MetricName"] == "FailedInvocations"]
    depth = [a for a in alarms if a["MetricName"] == "ApproximateNumberOfMessagesVisible"]
    if len(failed) != len(out["queues"]) or len(depth) != 1:
        sys.exit(f"{len(failed)} FailedInvocations alarms (want {len(out['queues'])}) and {len(depth)} events DLQ alarms (want 1)")
    print(f"{targets} targets of {len(rules)} rules carry the events DLQ and a retry policy; "
          f"{len(failed)} FailedInvocations alarms and the events DLQ's depth alarm")


def land(out_path, n):
    bucket = outputs(out_path)["landing_bucket"]
    s3 = client("s3")
    for i in range(int(n)):
        s3.put_object(Bucket=bucket, Key=f"in/tf-check {i}.csv", Body=f"id,n\n{i},{i}\n".encode())
    print(f"put {n} objects into s3://{bucket}/in/")


def batch(out_path, timeout):
    out = outputs(out_path)
    s3, glue = client("s3"), client("glue")
    deadline = time.time() + float(timeout)
    while time.time() < deadline:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=out["data_bucket"], Prefix="manifests/").get("Contents", [])]
        runs = glue.get_job_runs(JobName=out["glue_job"]).get("JobRuns", [])
        if keys and runs:
            manifest = json.loads(s3.get_object(Bucket=out["data_bucket"], Key=keys[0])["Body"].read())
            print(f"manifest s3://{out['data_bucket']}/{keys[0]} with {len(manifest['files'])} files; "
                  f"Glue run {runs[0]['Id']} of {out['glue_job']} ({runs[0]['JobRunState']}, "
                  f"--manifest {runs[0].get('Arguments', {}).get('--manifest')})")
            return
        time.sleep(1)
    sys.exit(f"no manifest under s3://{out['data_bucket']}/manifests/ and Glue run of {out['glue_job']} within {timeout}s")


def report(uri, n):
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    r = json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    people = r["people"]
    if len(people) != int(n) or r["numberOfPeople"] != int(n):
        sys.exit(f"report {uri}: {len(people)} people, want {n}")
    total = sum(p["numberOfCookiesConsumed"] for p in people)
    if total != r["totalCookiesConsumed"]:
        sys.exit(f"report {uri}: total {r['totalCookiesConsumed']} is not the sum {total}")
    print(f"report {uri}: {n} people, {total} cookies")


def empty(out_path):
    # The buckets are versioned and have no force_destroy (data is not thrown away
    # by a destroy), so the check removes what it wrote. glue/ is terraform's own.
    out = outputs(out_path)
    s3 = client("s3")
    n = 0
    for bucket in (out["data_bucket"], out["landing_bucket"]):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if not v["Key"].startswith("glue/"):
                    s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
                    n += 1
    print(f"deleted {n} object versions the check wrote")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"net": net, "env": env, "policies": policies, "lint": lint, "delivery": delivery, "land": land, "batch": batch, "empty": empty, "report": report}[cmd](*args)

data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# The execution role: what ECS needs to start the task (pull the image, write logs).
resource "aws_iam_role" "execution" {
  name               = "${var.stack}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# One task role per service, each with only what its WORKER_ROLES calls, each action
# on named resources where AWS allows it. The worker builds every ARN and URL from
# partition, region, account (sts:GetCallerIdentity, which needs no permission) and
# name, so it needs no List* permission.
resource "aws_iam_role" "task" {
  for_each           = local.roles
  name               = "${var.stack}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

# Job workers (WORKER_ROLES=jobs): the job queues, the data bucket, the bus, task
# callbacks, the state machines that startExecution queues start, and whatever the
# team's own Go jobs need (job_policy_statements).
data "aws_iam_policy_document" "jobs" {
  statement {
    sid = "ConsumeQueues"
    # SendMessage: a job past SQS's 12 h visibility cap is handed on as a
    # continuation on its own queue (docs/guide.md, "Long jobs").
    actions = [
      "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
      "sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:SendMessage",
    ]
    resources = [for k, _ in local.job_queues : aws_sqs_queue.queue[k].arn]
  }
  statement {
    sid       = "DeadLetter" # the copy of a message on its last receive; the DLQ depth gauge
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [for k, _ in local.job_queues : aws_sqs_queue.dlq[k].arn]
  }
  dynamic "statement" {
    for_each = local.event_delivery.dead_letter ? [1] : []
    content {
      sid       = "EventsDLQDepth" # the stack's events DLQ: found at start, its depth gauged
      actions   = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
      resources = [aws_sqs_queue.events_dlq[0].arn]
    }
  }
  statement {
    sid = "ReportTasks"
    # SendTaskSuccess/Failure/Heartbeat support no resource-level permissions: AWS
    # denies a grant scoped to state machine ARNs. The task token is the capability:
    # only who holds a live token can report on it.
    actions   = ["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"]
    resources = ["*"] #checkov:skip=CKV_AWS_111:SendTask* support no resource-level permissions; the task token is the capability
  }
  statement {
    sid       = "ScaleInProtection" # the worker holds it through the ECS agent while messages are in hand
    actions   = ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"]
    resources = ["${replace(aws_ecs_cluster.this.arn, ":cluster/", ":task/")}/*"]
  }
  statement {
    sid       = "PublishEvents"
    actions   = ["events:PutEvents"]
    resources = [aws_cloudwatch_event_bus.this.arn]
  }
  statement {
    sid       = "DataObjects" # DeleteObject: a task's checkpoint, once the task is done
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.data.arn}/*"]
  }
  statement {
    sid = "DescribeExecutions"
    # A heartbeat answered InvalidToken is checked against the task's execution: a
    # job is cancelled only when it no longer runs (docs/guide.md, Long jobs).
    # IAM lists both execution kinds as DescribeExecution's resources (parliament
    # holds a grant to it); the stack's machines are Standard, so express:* matches none.
    actions = ["states:DescribeExecution"]
    resources = concat(
      [for k, sm in aws_sfn_state_machine.this : "${replace(sm.arn, ":stateMachine:", ":execution:")}:*"],
      [for k, sm in aws_sfn_state_machine.this : "${replace(sm.arn, ":stateMachine:", ":express:")}:*:*"],
    )
  }
  statement {
    sid       = "ListData" # an execution's own objects; a missing key answers 404, not 403
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
  }
  dynamic "statement" {
    for_each = length(local.started_state_machines) > 0 ? [1] : []
    content {
      sid       = "StartExecutions"
      actions   = ["states:StartExecution"]
      resources = [for k in local.started_state_machines : aws_sfn_state_machine.this[k].arn]
    }
  }
  dynamic "statement" {
    for_each = var.kms_key_arn != "" ? [1] : []
    content {
      sid       = "UseKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
  dynamic "statement" {
    for_each = var.job_policy_statements
    content {
      sid       = statement.value.sid
      effect    = statement.value.effect
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }
}

# The batcher (WORKER_ROLES=batch): the s3Batch queue, reads of the landing bucket,
# manifests, results and claims in the data bucket, its Glue job, the bus.
data "aws_iam_policy_document" "batch" {
  statement {
    sid = "ConsumeQueues"
    actions = [
      "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
      "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
    ]
    resources = [for k, _ in local.batch_queues : aws_sqs_queue.queue[k].arn]
  }
  statement {
    sid       = "DeadLetter"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [for k, _ in local.batch_queues : aws_sqs_queue.dlq[k].arn]
  }
  dynamic "statement" {
    for_each = local.event_delivery.dead_letter ? [1] : []
    content {
      sid       = "EventsDLQDepth" # the stack's events DLQ: found at start, its depth gauged
      actions   = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
      resources = [aws_sqs_queue.events_dlq[0].arn]
    }
  }
  statement {
    # HeadObject of every file before it goes into a manifest: of the version its
    # event names (GetObjectVersion) in a versioned bucket.
    sid       = "ReadLanding"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.landing.arn}/*"]
  }
  statement {
    # claims/: each landing file's claim and each batch's lease, written with
    # If-None-Match / If-Match (a conditional write with If-Match needs GetObject too).
    sid     = "WriteBatchRecords"
    actions = ["s3:GetObject", "s3:PutObject"]
    resources = [
      "${aws_s3_bucket.data.arn}/manifests/*", "${aws_s3_bucket.data.arn}/results/*", "${aws_s3_bucket.data.arn}/claims/*",
    ]
  }
  statement {
    sid       = "ListBuckets" # a missing key answers 404, not 403
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.landing.arn, aws_s3_bucket.data.arn]
  }
  statement {
    sid       = "RunGlue"
    actions   = ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns"]
    resources = [aws_glue_job.etl.arn]
  }
  statement {
    sid       = "ScaleInProtection" # the worker holds it through the ECS agent while messages are in hand
    actions   = ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"]
    resources = ["${replace(aws_ecs_cluster.this.arn, ":cluster/", ":task/")}/*"]
  }
  statement {
    sid       = "PublishEvents"
    actions   = ["events:PutEvents"]
    resources = [aws_cloudwatch_event_bus.this.arn]
  }
  dynamic "statement" {
    for_each = var.kms_key_arn != "" ? [1] : []
    content {
      sid       = "UseKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
}

locals {
  task_policy = {
    jobs  = data.aws_iam_policy_document.jobs.json
    batch = data.aws_iam_policy_document.batch.json
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = local.roles
  name     = "taskbridge-${each.key}"
  role     = aws_iam_role.task[each.key].id
  policy   = local.task_policy[each.key]
}

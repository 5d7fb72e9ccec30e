# Every queue is encrypted with SSE-SQS, or with kms_key_arn when set: never the
# AWS-managed key alias/aws/sqs, whose policy cannot let EventBridge (a rule
# target) use it, so every delivery to such a queue fails. A customer key's policy
# must let events.amazonaws.com GenerateDataKey and Decrypt (docs/operations.md).
#
# Message size: SQS takes 1 MiB (1,048,576 bytes) since August 2025, and events
# reach 1 MB since 2026-01-29 (internal/awslimit). The hashicorp/aws provider of
# versions.tf (~> 5.80; 5.100.0 in make tf-check) validates max_message_size to
# 1024..262144 (hashicorp/terraform-provider-aws#43692, raised in 6.8.0) and sends
# its default, 262144, when the attribute is left out: queues are created at
# 256 KiB. raise_queue_size_with_aws_cli raises each to 1 MiB after create (below),
# and ignore_changes keeps an apply from putting a raised queue back to 256 KiB:
# the provider sends only changed attributes on update, and max_message_size never
# changes here. Once versions.tf takes a provider >= 6.8.0: set max_message_size =
# 1048576 on every queue, drop the ignore_changes and the option (docs/operations.md,
# "Queue size: 1 MiB with terraform").

resource "aws_sqs_queue" "dlq" {
  for_each                          = local.queues
  name                              = local.dlq_name[each.key]
  message_retention_seconds         = 1209600 # 14 days: time to look at what failed
  sqs_managed_sse_enabled           = local.sqs_sse.managed
  kms_master_key_id                 = local.sqs_sse.key
  kms_data_key_reuse_period_seconds = local.sqs_sse.reuse
  lifecycle {
    ignore_changes = [max_message_size] # see "Message size" above
  }
}

resource "aws_sqs_queue" "queue" {
  for_each                          = local.queues
  name                              = local.queue_name[each.key]
  visibility_timeout_seconds        = each.value.visibility_timeout
  receive_wait_time_seconds         = 20
  sqs_managed_sse_enabled           = local.sqs_sse.managed
  kms_master_key_id                 = local.sqs_sse.key
  kms_data_key_reuse_period_seconds = local.sqs_sse.reuse
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = each.value.max_receive_count
  })
  lifecycle {
    ignore_changes = [max_message_size] # see "Message size" above
  }
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each  = local.queues
  queue_url = aws_sqs_queue.dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.queue[each.key].arn]
  })
}

# Only the queue's own rule may send to it.
data "aws_iam_policy_document" "queue" {
  for_each = local.queues
  statement {
    sid       = "AllowItsRule"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.queue[each.key].arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.queue[each.key].arn]
    }
  }
}

resource "aws_sqs_queue_policy" "queue" {
  for_each  = local.queues
  queue_url = aws_sqs_queue.queue[each.key].id
  policy    = data.aws_iam_policy_document.queue[each.key].json
}

# The events DLQ: what EventBridge could not deliver to a rule target once the
# target's retry policy is spent (`worker dlq list --queue eventbridge`), encrypted
# as every queue.
resource "aws_sqs_queue" "events_dlq" {
  count                             = local.event_delivery.dead_letter ? 1 : 0
  name                              = local.events_dlq_name
  message_retention_seconds         = 1209600 # 14 days, as every DLQ
  sqs_managed_sse_enabled           = local.sqs_sse.managed
  kms_master_key_id                 = local.sqs_sse.key
  kms_data_key_reuse_period_seconds = local.sqs_sse.reuse
  lifecycle {
    ignore_changes = [max_message_size] # see "Message size" above
  }
}

# Only the stack's rules may send to it.
data "aws_iam_policy_document" "events_dlq" {
  count = local.event_delivery.dead_letter ? 1 : 0
  statement {
    sid       = "AllowTheStacksRules"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events_dlq[0].arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = concat([for r in aws_cloudwatch_event_rule.queue : r.arn], [aws_cloudwatch_event_rule.etl_error.arn])
    }
  }
}

resource "aws_sqs_queue_policy" "events_dlq" {
  count     = local.event_delivery.dead_letter ? 1 : 0
  queue_url = aws_sqs_queue.events_dlq[0].id
  policy    = data.aws_iam_policy_document.events_dlq[0].json
}

# Every queue of the module at 1 MiB, where the provider cannot (see "Message
# size" above): one `aws sqs set-queue-attributes` per queue, run where terraform
# runs, with the credentials the CLI finds there. Keyed by queue name, known at
# plan. A queue being replaced has an unknown URL at plan (even when it comes back
# the same), which replaces its terraform_data and runs the call again. The call is
# idempotent; a failed one taints its terraform_data, so the next apply runs it again. No shell: the CLI's arguments are the interpreter,
# the URL its last argument.
locals {
  queue_urls = merge(
    { for k, q in aws_sqs_queue.queue : local.queue_name[k] => q.url },
    { for k, q in aws_sqs_queue.dlq : local.dlq_name[k] => q.url },
    { for q in aws_sqs_queue.events_dlq : local.events_dlq_name => q.url },
  )
}

resource "terraform_data" "queue_size" {
  for_each         = { for name, url in local.queue_urls : name => url if var.raise_queue_size_with_aws_cli }
  triggers_replace = each.value
  provisioner "local-exec" {
    interpreter = concat(
      ["aws", "sqs", "set-queue-attributes", "--region", local.region, "--attributes", "MaximumMessageSize=1048576"],
      var.aws_cli_endpoint_url != "" ? ["--endpoint-url", var.aws_cli_endpoint_url] : [],
      ["--queue-url"],
    )
    command = each.value
  }
}

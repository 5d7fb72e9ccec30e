# Message size: SQS takes 1 MiB (1,048,576 bytes) since August 2025, and events
# reach 1 MB since 2026-01-29 (internal/awslimit). The hashicorp/aws provider of
# versions.tf (~> 5.80; 5.100.0 in make tf-check) validates max_message_size to
# 1024..262144 (hashicorp/terraform-provider-aws#43692) and sends its default,
# 262144, when the attribute is left out: queues made here take 256 KiB, and an
# apply puts a queue raised by hand back to it. Moving to 1 MiB needs a provider
# whose validation takes 1_048_576 (6.x) and max_message_size = 1048576 on every
# queue below (docs/guide.md, "Payload limits"). `worker bootstrap` sets 1 MiB.

resource "aws_sqs_queue" "dlq" {
  for_each                          = local.queues
  name                              = local.dlq_name[each.key]
  message_retention_seconds         = 1209600 # 14 days: time to look at what failed
  kms_master_key_id                 = local.kms_for_sqs
  kms_data_key_reuse_period_seconds = 300
}

resource "aws_sqs_queue" "queue" {
  for_each                          = local.queues
  name                              = local.queue_name[each.key]
  visibility_timeout_seconds        = each.value.visibility_timeout
  receive_wait_time_seconds         = 20
  kms_master_key_id                 = local.kms_for_sqs
  kms_data_key_reuse_period_seconds = 300
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = each.value.max_receive_count
  })
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

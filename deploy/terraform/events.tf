resource "aws_cloudwatch_event_bus" "this" {
  name = local.bus_name
}

# Queues of the topology's kinds (job, exec, http, startExecution): their detail
# types on the stack's bus, from the sources the topology allows (its state
# machines', the worker's own, the queue's `sources`) unless the queue takes any
# source. s3Batch queues: S3 Object Created events of the landing bucket, which S3
# puts on the default bus.
resource "aws_cloudwatch_event_rule" "queue" {
  for_each       = local.queues
  name           = local.rule_name[each.key]
  description    = "taskbridge: routes to queue ${each.key}"
  event_bus_name = each.value.s3_batch ? "default" : aws_cloudwatch_event_bus.this.name
  event_pattern = each.value.s3_batch ? jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail = merge(
      { bucket = { name = [aws_s3_bucket.landing.id] } },
      each.value.key_prefix != "" ? { object = { key = [{ prefix = each.value.key_prefix }] } } : {},
    )
    }) : jsonencode(merge(
    { "detail-type" = each.value.detail_types },
    each.value.any_source ? {} : { source = each.value.sources },
  ))
  lifecycle {
    precondition {
      condition     = each.value.s3_batch || length(each.value.detail_types) > 0
      error_message = "queue ${each.key} of ${local.topology_file} needs detailTypes (or s3Batch)."
    }
  }
}

resource "aws_cloudwatch_event_target" "queue" {
  for_each       = local.queues
  rule           = aws_cloudwatch_event_rule.queue[each.key].name
  event_bus_name = aws_cloudwatch_event_rule.queue[each.key].event_bus_name
  target_id      = "sqs-${each.key}"
  arn            = aws_sqs_queue.queue[each.key].arn
  # Explicit: EventBridge's implicit policy is a day of retries, then the event is
  # dropped and its execution waits with nothing to show why.
  retry_policy {
    maximum_retry_attempts       = local.event_delivery.retry_attempts
    maximum_event_age_in_seconds = local.event_delivery.max_event_age_s
  }
  dynamic "dead_letter_config" {
    for_each = local.event_delivery.dead_letter ? [1] : []
    content {
      arn = aws_sqs_queue.events_dlq[0].arn
    }
  }
}

# etl-error events reach the SNS topic, for people and pagers.
resource "aws_cloudwatch_event_rule" "etl_error" {
  name           = "${var.stack}-etl-error"
  description    = "taskbridge: failed ETL batches to SNS"
  event_bus_name = aws_cloudwatch_event_bus.this.name
  event_pattern  = jsonencode({ "detail-type" = ["etl-error"], source = [local.topology.source] })
}

resource "aws_cloudwatch_event_target" "etl_error" {
  rule           = aws_cloudwatch_event_rule.etl_error.name
  event_bus_name = aws_cloudwatch_event_bus.this.name
  target_id      = "sns-etl-error"
  arn            = aws_sns_topic.etl_error.arn
  retry_policy {
    maximum_retry_attempts       = local.event_delivery.retry_attempts
    maximum_event_age_in_seconds = local.event_delivery.max_event_age_s
  }
  dynamic "dead_letter_config" {
    for_each = local.event_delivery.dead_letter ? [1] : []
    content {
      arn = aws_sqs_queue.events_dlq[0].arn
    }
  }
}

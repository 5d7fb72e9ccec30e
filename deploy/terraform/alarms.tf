# CloudWatch alarms on what only CloudWatch sees: a rule whose target invocations
# fail for good (FailedInvocations: the retry policy spent; the event is in the
# events DLQ, or dropped when the topology turns it off), and events in the events
# DLQ. They notify alarm_actions (e.g. an SNS topic of the on-call).
resource "aws_cloudwatch_metric_alarm" "rule_failed_invocations" {
  for_each            = local.queues
  alarm_name          = "${var.stack}-${each.key}-rule-failed-invocations"
  alarm_description   = "EventBridge could not deliver events of rule ${local.rule_name[each.key]} to queue ${each.key}: check the queue's policy and KMS key; the events are in ${local.events_dlq_name} (worker dlq list --queue eventbridge)."
  namespace           = "AWS/Events"
  metric_name         = "FailedInvocations"
  dimensions          = each.value.s3_batch ? { RuleName = aws_cloudwatch_event_rule.queue[each.key].name } : { EventBusName = aws_cloudwatch_event_bus.this.name, RuleName = aws_cloudwatch_event_rule.queue[each.key].name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "events_dlq_depth" {
  count               = local.event_delivery.dead_letter ? 1 : 0
  alarm_name          = "${local.events_dlq_name}-not-empty"
  alarm_description   = "Events EventBridge could not deliver to a queue wait in ${local.events_dlq_name}: fix the cause, then worker dlq redrive --queue eventbridge."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.events_dlq[0].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

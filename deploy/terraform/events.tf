resource "aws_cloudwatch_event_bus" "this" {
  name = local.bus_name
}

# Job queues: the detail types of the topology, on the stack's bus. The landing
# queue: S3 Object Created events of the landing bucket, which S3 puts on the
# default bus.
resource "aws_cloudwatch_event_rule" "queue" {
  for_each       = local.queues
  name           = local.rule_name[each.key]
  description    = "taskbridge: routes to queue ${each.key}"
  event_bus_name = try(each.value.s3ObjectCreated, false) ? "default" : aws_cloudwatch_event_bus.this.name
  event_pattern = try(each.value.s3ObjectCreated, false) ? jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail        = { bucket = { name = [aws_s3_bucket.landing.id] } }
    }) : jsonencode({
    "detail-type" = each.value.detailTypes
  })
}

resource "aws_cloudwatch_event_target" "queue" {
  for_each       = local.queues
  rule           = aws_cloudwatch_event_rule.queue[each.key].name
  event_bus_name = aws_cloudwatch_event_rule.queue[each.key].event_bus_name
  target_id      = "sqs-${each.key}"
  arn            = aws_sqs_queue.queue[each.key].arn
}

# etl-error events reach the SNS topic, for people and pagers.
resource "aws_cloudwatch_event_rule" "etl_error" {
  name           = "${var.stack}-etl-error"
  description    = "taskbridge: failed ETL batches to SNS"
  event_bus_name = aws_cloudwatch_event_bus.this.name
  event_pattern  = jsonencode({ "detail-type" = ["etl-error"] })
}

resource "aws_cloudwatch_event_target" "etl_error" {
  rule           = aws_cloudwatch_event_rule.etl_error.name
  event_bus_name = aws_cloudwatch_event_bus.this.name
  target_id      = "sns-etl-error"
  arn            = aws_sns_topic.etl_error.arn
}

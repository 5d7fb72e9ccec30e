# Encrypted with kms_key_arn when set. Never the AWS-managed key alias/aws/sns: its
# policy cannot let EventBridge (the etl-error rule's target) use it, so every
# publish would fail; SNS has no service-managed key of its own as SQS has.
resource "aws_sns_topic" "etl_error" {
  #checkov:skip=CKV_AWS_26:encrypted with kms_key_arn when set; the AWS-managed key would refuse EventBridge's publishes
  name              = "${var.stack}-etl-error"
  kms_master_key_id = var.kms_key_arn != "" ? var.kms_key_arn : null
}

data "aws_iam_policy_document" "etl_error_topic" {
  statement {
    sid       = "AllowItsRule"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.etl_error.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.etl_error.arn]
    }
  }
}

resource "aws_sns_topic_policy" "etl_error" {
  arn    = aws_sns_topic.etl_error.arn
  policy = data.aws_iam_policy_document.etl_error_topic.json
}

resource "aws_sns_topic_subscription" "etl_error_email" {
  for_each  = toset(var.etl_error_emails)
  topic_arn = aws_sns_topic.etl_error.arn
  protocol  = "email"
  endpoint  = each.value
}

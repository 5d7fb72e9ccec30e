data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

resource "aws_sfn_state_machine" "this" {
  #checkov:skip=CKV_AWS_285:execution data holds task tokens (credentials); errors are logged without it
  for_each = local.state_machines
  name     = local.state_machine[each.key]
  role_arn = aws_iam_role.states.arn
  # The same ASL file `worker bootstrap` uses, with the same placeholders.
  definition = templatefile(local.definition_file[each.key], {
    event_bus_name = aws_cloudwatch_event_bus.this.name
    partition      = data.aws_partition.current.partition
  })
  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.states.arn}:*"
    include_execution_data = false
    level                  = "ERROR"
  }
  tracing_configuration {
    enabled = true
  }
}

resource "aws_cloudwatch_log_group" "states" {
  name              = "/aws/vendedlogs/states/${var.stack}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn != "" ? var.kms_key_arn : null
}

data "aws_iam_policy_document" "states_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "states" {
  name               = "${var.stack}-states"
  assume_role_policy = data.aws_iam_policy_document.states_assume.json
}

data "aws_iam_policy_document" "states" {
  statement {
    sid       = "PutTaskEvents"
    actions   = ["events:PutEvents"]
    resources = [aws_cloudwatch_event_bus.this.arn]
  }
  statement {
    sid = "Logging"
    # CloudWatch Logs delivery for Step Functions takes no resource-level permissions.
    actions = [
      "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    ]
    resources = ["*"] #checkov:skip=CKV_AWS_111:log delivery APIs support no resource-level permissions
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    resources = ["*"] #checkov:skip=CKV_AWS_111:X-Ray APIs support no resource-level permissions
  }
}

resource "aws_iam_role_policy" "states" {
  name   = "taskbridge"
  role   = aws_iam_role.states.id
  policy = data.aws_iam_policy_document.states.json
}

# Starts a state machine of the topology on a schedule; off unless schedule_enabled.
resource "aws_scheduler_schedule" "this" {
  count               = var.schedule_enabled ? 1 : 0
  name                = "${var.stack}-${var.schedule_state_machine}"
  schedule_expression = var.schedule_expression
  flexible_time_window {
    mode = "OFF"
  }
  target {
    arn      = aws_sfn_state_machine.this[var.schedule_state_machine].arn
    role_arn = aws_iam_role.scheduler[0].arn
    input    = var.schedule_input
  }
  lifecycle {
    precondition {
      condition     = contains(keys(local.state_machines), var.schedule_state_machine)
      error_message = "schedule_state_machine must name a state machine of the topology."
    }
  }
}

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  count              = var.schedule_enabled ? 1 : 0
  name               = "${var.stack}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
}

resource "aws_iam_role_policy" "scheduler" {
  count = var.schedule_enabled ? 1 : 0
  name  = "start-${var.schedule_state_machine}"
  role  = aws_iam_role.scheduler[0].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["states:StartExecution"], Resource = [aws_sfn_state_machine.this[var.schedule_state_machine].arn] }]
  })
}

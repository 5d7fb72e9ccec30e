resource "aws_glue_job" "etl" {
  #checkov:skip=CKV_AWS_195:the placeholder job writes only to the encrypted data bucket; attach a security configuration with the real job
  name              = local.glue_job_name
  role_arn          = aws_iam_role.glue.arn
  glue_version      = "4.0"
  worker_type       = "G.1X"
  number_of_workers = 2
  timeout           = 60
  command {
    name            = "glueetl"
    python_version  = "3"
    script_location = "s3://${aws_s3_bucket.data.id}/${aws_s3_object.glue_script.key}"
  }
  execution_property {
    max_concurrent_runs = 3
  }
}

data "aws_iam_policy_document" "glue_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["glue.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "glue" {
  name               = "${var.stack}-glue"
  assume_role_policy = data.aws_iam_policy_document.glue_assume.json
}

data "aws_iam_policy_document" "glue" {
  statement {
    sid       = "ReadLanding" # each file at the version its manifest names
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.landing.arn}/*"]
  }
  statement {
    sid       = "ReadScriptAndManifests"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data.arn}/glue/*", "${aws_s3_bucket.data.arn}/manifests/*"]
  }
  statement {
    sid       = "WriteOutput"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.data.arn}/etl-output/*"]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:CreateLogGroup"]
    resources = ["arn:${data.aws_partition.current.partition}:logs:${local.region}:${data.aws_caller_identity.current.account_id}:log-group:/aws-glue/*"]
  }
}

resource "aws_iam_role_policy" "glue" {
  name   = "taskbridge"
  role   = aws_iam_role.glue.id
  policy = data.aws_iam_policy_document.glue.json
}

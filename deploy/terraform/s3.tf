resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_19:encrypted by aws_s3_bucket_server_side_encryption_configuration.this (a for_each checkov does not follow)
  #checkov:skip=CKV_AWS_145:SSE-S3 by default; SSE-KMS with bucket keys when kms_key_arn is set
  #checkov:skip=CKV_AWS_18:access logs go to an organisation's log bucket, which this module does not own
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery choice for the operator, not a default
  #checkov:skip=CKV2_AWS_62:the data bucket's writes are the worker's own; only the landing bucket feeds events
  bucket = var.data_bucket_name
}

resource "aws_s3_bucket" "landing" {
  #checkov:skip=CKV_AWS_19:encrypted by aws_s3_bucket_server_side_encryption_configuration.this (a for_each checkov does not follow)
  #checkov:skip=CKV_AWS_145:SSE-S3 by default; SSE-KMS with bucket keys when kms_key_arn is set
  #checkov:skip=CKV_AWS_18:access logs go to an organisation's log bucket, which this module does not own
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery choice for the operator, not a default
  bucket = var.landing_bucket_name
}

locals {
  buckets = { data = aws_s3_bucket.data.id, landing = aws_s3_bucket.landing.id }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each                = local.buckets
  bucket                  = each.value
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets
  bucket   = each.value
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn != "" ? "aws:kms" : "AES256"
      kms_master_key_id = var.kms_key_arn != "" ? var.kms_key_arn : null
    }
    bucket_key_enabled = var.kms_key_arn != ""
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.buckets
  bucket   = each.value
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets
  bucket   = each.value
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = local.buckets
  bucket   = each.value
  rule {
    id     = "expire-old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
  # The worker's own folders that expire (deploy/data-bucket.json, the list the
  # execution-name check reads too): the batcher's claims and leases and long jobs'
  # leases, kept longer than SQS keeps a message, so any redelivery of an event
  # still finds its claim and any continuation its lease.
  dynamic "rule" {
    for_each = { for name, f in local.expiring_folders : name => f if each.key == "data" }
    content {
      id     = "expire-${rule.key}"
      status = "Enabled"
      filter {
        prefix = "${rule.key}/"
      }
      expiration {
        days = rule.value.expireDays
      }
      noncurrent_version_expiration {
        noncurrent_days = try(rule.value.noncurrentDays, 30)
      }
      abort_incomplete_multipart_upload {
        days_after_initiation = 7
      }
    }
  }
}

# The landing bucket's Object Created events go to EventBridge (the default bus).
resource "aws_s3_bucket_notification" "landing" {
  bucket      = aws_s3_bucket.landing.id
  eventbridge = true
}

resource "aws_s3_object" "glue_script" {
  bucket = aws_s3_bucket.data.id
  key    = "glue/etl.py"
  source = "${path.module}/../glue/etl.py"
  etag   = filemd5("${path.module}/../glue/etl.py")
}

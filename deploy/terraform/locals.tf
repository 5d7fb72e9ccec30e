# The caller's provider decides the region (the module has no provider block, so
# it takes providers, count and for_each).
data "aws_region" "current" {}

locals {
  region = data.aws_region.current.name

  # The one source of truth, shared with the worker and `worker bootstrap`: the
  # shipped topology unless topology_file names another. ASL paths resolve from the
  # topology file's folder, as the worker resolves them.
  topology_file = var.topology_file != "" ? var.topology_file : "${path.module}/../topology.json"
  topology_dir  = dirname(local.topology_file)
  topology      = jsondecode(file(local.topology_file))

  state_machines = { for sm in local.topology.stateMachines : sm.name => sm }
  definition_file = {
    for k, sm in local.state_machines : k => "${local.topology_dir}/${sm.definition}"
  }

  # The sources a rule accepts by default: what the topology's own state machines
  # put (the Source of their putEvents steps) and what the worker itself publishes.
  asl_sources = distinct(flatten([
    for k, f in local.definition_file : [for m in regexall("\"Source\"\\s*:\\s*\"([^\"]+)\"", file(f)) : m[0]]
  ]))
  own_sources = distinct(concat(local.asl_sources, [local.topology.source]))

  # Every queue in one shape, with the worker's defaults for omitted fields.
  queues = {
    for q in local.topology.queues : q.name => {
      s3_batch           = try(q.s3Batch, null) != null
      key_prefix         = try(q.s3Batch.keyPrefix, "")
      detail_types       = try(q.detailTypes, [])
      any_source         = try(q.anySource, false)
      sources            = distinct(concat(local.own_sources, try(q.sources, [])))
      start_execution    = try(q.startExecution.stateMachine, "")
      visibility_timeout = try(q.visibilityTimeoutSeconds, 60)
      max_receive_count  = try(q.maxReceiveCount, 5)
    }
  }
  # How EventBridge delivers to the queues (topology "eventDelivery", defaults of
  # internal/topology/delivery.go): every target's retry policy, and the stack's
  # events DLQ unless deadLetter is false.
  event_delivery = {
    dead_letter     = try(local.topology.eventDelivery.deadLetter, true)
    retry_attempts  = try(local.topology.eventDelivery.retryAttempts, 185)
    max_event_age_s = try(local.topology.eventDelivery.maxEventAgeSeconds, 3600)
  }

  job_queues   = { for k, q in local.queues : k => q if !q.s3_batch }
  batch_queues = { for k, q in local.queues : k => q if q.s3_batch }

  # State machines that startExecution queues start: the only ones the job workers
  # may start.
  started_state_machines = distinct([for q in local.job_queues : q.start_execution if q.start_execution != ""])

  # The worker's own top-level folders of the data bucket, the one list shared with
  # the worker's execution-name check; those with expireDays get a lifecycle rule.
  data_bucket_folders = jsondecode(file("${path.module}/../data-bucket.json")).reservedFolders
  expiring_folders    = { for f in local.data_bucket_folders : f.name => f if try(f.expireDays, null) != null }

  # Names follow internal/topology/names.go.
  bus_name        = var.stack
  glue_job_name   = "${var.stack}-etl"
  queue_name      = { for k, _ in local.queues : k => "${var.stack}-${k}" }
  dlq_name        = { for k, _ in local.queues : k => "${var.stack}-${k}-dlq" }
  events_dlq_name = "${var.stack}-eventbridge-dlq"
  rule_name       = { for k, _ in local.queues : k => "${var.stack}-${k}" }
  state_machine   = { for k, _ in local.state_machines : k => "${var.stack}-${k}" }
  # SSE-SQS, or kms_key_arn (see sqs.tf: never the AWS-managed key).
  sqs_sse = {
    managed = var.kms_key_arn == "" ? true : null
    key     = var.kms_key_arn != "" ? var.kms_key_arn : null
    reuse   = var.kms_key_arn != "" ? 300 : null
  }
  container_name  = "worker"
  shutdown_string = "${var.shutdown_timeout_seconds}s"

  worker_environment = concat([
    { name = "AWS_REGION", value = local.region },
    { name = "WORKER_STACK", value = var.stack },
    { name = "WORKER_EVENT_BUS", value = aws_cloudwatch_event_bus.this.name },
    { name = "WORKER_DATA_BUCKET", value = aws_s3_bucket.data.id },
    { name = "WORKER_LANDING_BUCKET", value = aws_s3_bucket.landing.id },
    { name = "WORKER_GLUE_JOB", value = aws_glue_job.etl.name },
    { name = "WORKER_SHUTDOWN_TIMEOUT", value = local.shutdown_string },
    { name = "WORKER_BATCH_MAX_FILES", value = tostring(var.batch_max_files) },
    { name = "WORKER_BATCH_WINDOW", value = var.batch_window },
    { name = "WORKER_LOG_LEVEL", value = var.log_level },
    { name = "WORKER_LOG_FORMAT", value = "json" },
    { name = "WORKER_METRICS_ADDR", value = ":9090" },
    ],
    # Empty: the topology embedded in the image (the shipped deploy/topology.json).
    var.worker_topology != "" ? [{ name = "WORKER_TOPOLOGY", value = var.worker_topology }] : [],
  )
}

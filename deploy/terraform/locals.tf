locals {
  # The one source of truth, shared with the worker and `worker bootstrap`.
  topology = jsondecode(file("${path.module}/../topology.json"))

  job_queues     = { for q in local.topology.queues : q.name => q if !try(q.s3ObjectCreated, false) }
  landing_queues = { for q in local.topology.queues : q.name => q if try(q.s3ObjectCreated, false) }
  queues         = merge(local.job_queues, local.landing_queues)

  state_machines = { for sm in local.topology.stateMachines : sm.name => sm }

  # Names follow internal/topology/names.go.
  bus_name        = var.stack
  glue_job_name   = "${var.stack}-etl"
  queue_name      = { for k, _ in local.queues : k => "${var.stack}-${k}" }
  dlq_name        = { for k, _ in local.queues : k => "${var.stack}-${k}-dlq" }
  rule_name       = { for k, _ in local.queues : k => "${var.stack}-${k}" }
  state_machine   = { for k, _ in local.state_machines : k => "${var.stack}-${k}" }
  kms_for_sqs     = var.kms_key_arn != "" ? var.kms_key_arn : "alias/aws/sqs"
  container_name  = "worker"
  shutdown_string = "${var.shutdown_timeout_seconds}s"

  worker_environment = [
    { name = "AWS_REGION", value = var.region },
    { name = "WORKER_STACK", value = var.stack },
    { name = "WORKER_DATA_BUCKET", value = var.data_bucket_name },
    { name = "WORKER_LANDING_BUCKET", value = var.landing_bucket_name },
    { name = "WORKER_SHUTDOWN_TIMEOUT", value = local.shutdown_string },
    { name = "WORKER_BATCH_MAX_FILES", value = tostring(var.batch_max_files) },
    { name = "WORKER_BATCH_WINDOW", value = var.batch_window },
    { name = "WORKER_LOG_LEVEL", value = var.log_level },
    { name = "WORKER_LOG_FORMAT", value = "json" },
    { name = "WORKER_METRICS_ADDR", value = ":9090" },
  ]
}

output "event_bus" {
  description = "Name of the stack's event bus."
  value       = aws_cloudwatch_event_bus.this.name
}

output "data_bucket" {
  description = "Data bucket (reports under <execution>/, manifests under manifests/)."
  value       = aws_s3_bucket.data.id
}

output "landing_bucket" {
  description = "Bucket to drop files into for the batched ETL."
  value       = aws_s3_bucket.landing.id
}

output "glue_job" {
  description = "Glue job the batcher starts."
  value       = aws_glue_job.etl.name
}

output "state_machines" {
  description = "Logical name → state machine ARN."
  value       = { for k, sm in aws_sfn_state_machine.this : k => sm.arn }
}

output "queues" {
  description = "Logical name → queue URL."
  value       = { for k, q in aws_sqs_queue.queue : k => q.id }
}

output "dlqs" {
  description = "Logical name → dead-letter queue URL."
  value       = { for k, q in aws_sqs_queue.dlq : k => q.id }
}

output "etl_error_topic" {
  description = "SNS topic that etl-error events reach."
  value       = aws_sns_topic.etl_error.arn
}

output "ecs_cluster" {
  description = "ECS cluster of the worker services."
  value       = aws_ecs_cluster.this.name
}

output "worker_log_group" {
  description = "CloudWatch log group of the worker (grep an execution ARN to follow one run)."
  value       = aws_cloudwatch_log_group.worker.name
}

output "task_definitions" {
  description = "Service (jobs, batch) → ECS task definition ARN; its environment is the worker's configuration."
  value       = { for k, td in aws_ecs_task_definition.worker : k => td.arn }
}

output "task_roles" {
  description = "Service (jobs, batch) → task role ARN."
  value       = { for k, r in aws_iam_role.task : k => r.arn }
}

output "events_dlq" {
  description = "URL of the events DLQ: what EventBridge could not deliver to a queue (empty when the topology's eventDelivery.deadLetter is false)."
  value       = local.event_delivery.dead_letter ? aws_sqs_queue.events_dlq[0].id : ""
}

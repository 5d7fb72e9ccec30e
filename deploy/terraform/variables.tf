variable "stack" {
  description = "Name prefix of every resource, as WORKER_STACK (bus, queues, rules, state machines, Glue job)."
  type        = string
  default     = "taskbridge"
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,30}$", var.stack))
    error_message = "stack must be 2-31 lowercase letters, digits or dashes."
  }
}

variable "topology_file" {
  description = "Topology file (queues, what each runs, routing, state machines); ASL paths resolve from its folder. A relative path is read from the directory terraform runs in (path.root). Empty: the shipped deploy/topology.json."
  type        = string
  default     = ""
  validation {
    # try: terraform's || evaluates both sides, and fileexists fails on a folder.
    condition     = var.topology_file == "" || try(fileexists(var.topology_file), false)
    error_message = "topology_file \"${var.topology_file}\" is not a file (a relative path is read from the directory terraform runs in; \"$${path.module}/topology.json\" names a file beside the calling module)."
  }
  validation {
    condition     = var.topology_file == "" || var.worker_topology != ""
    error_message = "topology_file is set but worker_topology is empty: the tasks would serve the topology embedded in the image (the cookies flow), not \"${var.topology_file}\". Set worker_topology to the same file's path inside your image (e.g. \"/app/topology.json\")."
  }
}

variable "worker_topology" {
  description = "WORKER_TOPOLOGY of the tasks: the same topology's path inside the container image. Empty: the topology embedded in the image (the shipped one)."
  type        = string
  default     = ""
}

variable "job_policy_statements" {
  description = "Extra statements of the job workers' task role, for what the team's own Go jobs call (e.g. their tables or buckets)."
  type = list(object({
    sid       = optional(string)
    effect    = optional(string, "Allow")
    actions   = list(string)
    resources = list(string)
  }))
  default = []
}

variable "data_bucket_name" {
  description = "Globally unique name of the data bucket (profiles, reports, manifests, claim checks)."
  type        = string
}

variable "landing_bucket_name" {
  description = "Globally unique name of the landing bucket whose Object Created events feed the batcher."
  type        = string
}

variable "image" {
  description = "Container image of the worker, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/taskbridge:1.0.0."
  type        = string
}

variable "vpc_subnet_ids" {
  description = "Private subnets of the ECS services (with a route to the AWS APIs: NAT or VPC endpoints)."
  type        = list(string)
}

variable "vpc_security_group_ids" {
  description = "Security groups of the ECS tasks; egress to the AWS APIs on 443 is all they need."
  type        = list(string)
}

variable "job_workers" {
  description = "Job-worker tasks: min, desired at creation, max (scaled on queue backlog per task)."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 1, desired = 1, max = 10 }
}

variable "backlog_per_task" {
  description = "Target messages (visible + in flight) per job-worker task for autoscaling."
  type        = number
  default     = 100
}

variable "task_cpu" {
  description = "Fargate CPU units of a task."
  type        = number
  default     = 256
}

variable "task_memory" {
  description = "Fargate memory of a task, MiB."
  type        = number
  default     = 512
}

variable "shutdown_timeout_seconds" {
  description = "WORKER_SHUTDOWN_TIMEOUT; the container stopTimeout is this plus 5 s."
  type        = number
  default     = 25
  validation {
    condition     = var.shutdown_timeout_seconds > 0 && var.shutdown_timeout_seconds + 5 <= 120
    error_message = "shutdown_timeout_seconds + 5 is the container's stopTimeout, which Fargate caps at 120 s: shutdown_timeout_seconds must be 1..115."
  }
}

variable "batch_max_files" {
  description = "WORKER_BATCH_MAX_FILES: files that flush a batch."
  type        = number
  default     = 100
}

variable "batch_window" {
  description = "WORKER_BATCH_WINDOW: time after a batch's first file that flushes it (Go duration)."
  type        = string
  default     = "15m"
}

variable "log_level" {
  description = "WORKER_LOG_LEVEL."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "CloudWatch retention of the worker's logs."
  type        = number
  default     = 365
}

variable "schedule_enabled" {
  description = "Start schedule_state_machine on schedule_expression."
  type        = bool
  default     = false
}

variable "schedule_expression" {
  description = "EventBridge Scheduler expression for schedule_state_machine."
  type        = string
  default     = "cron(0 6 * * ? *)"
}

variable "schedule_state_machine" {
  description = "Topology name of the state machine the schedule starts."
  type        = string
  default     = "cookies"
}

variable "schedule_input" {
  description = "Execution input of the scheduled runs (JSON)."
  type        = string
  default     = "{\"count\":10}"
}

variable "etl_error_emails" {
  description = "Addresses subscribed to the etl-error SNS topic (each must confirm)."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "KMS key for buckets, queues, topic and logs; empty uses AWS-managed keys."
  type        = string
  default     = ""
}

variable "alarm_actions" {
  description = "ARNs (e.g. SNS topics) the CloudWatch alarms notify: a rule's FailedInvocations, the events DLQ not empty. Empty: the alarms only change state."
  type        = list(string)
  default     = []
}

variable "raise_queue_size_with_aws_cli" {
  description = "Raise every queue the module makes (job queues, the landing queue, their DLQs, the events DLQ) to 1 MiB after create with `aws sqs set-queue-attributes`, run where terraform runs: the hashicorp/aws provider before 6.8.0 cannot set a max_message_size over 262144, so without this the queues take 256 KiB. Needs the AWS CLI on PATH with credentials for the provider's account (docs/operations.md, \"Queue size\")."
  type        = bool
  default     = false
}

variable "aws_cli_endpoint_url" {
  description = "--endpoint-url of the raise_queue_size_with_aws_cli calls, for an emulator (e.g. http://127.0.0.1:4566). Empty: the CLI's own endpoint (AWS_ENDPOINT_URL, or the region's)."
  type        = string
  default     = ""
}

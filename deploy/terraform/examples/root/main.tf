# A root module that deploys taskbridge with the module in deploy/terraform. The
# provider is the caller's (region, credentials, default tags); the module has none,
# so it takes providers, count and for_each like any module.
#
#   cd deploy/terraform/examples/root
#   cp terraform.tfvars.example terraform.tfvars   # then edit
#   terraform init && terraform apply
#
# In your own repository, point source at this one's deploy/terraform folder (a git
# source with //deploy/terraform and a ref); the module reads the shipped topology
# and Glue script beside it.

terraform {
  required_version = ">= 1.9.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { Project = "taskbridge", Stack = var.stack }
  }
}

module "taskbridge" {
  source = "../.."

  stack                  = var.stack
  data_bucket_name       = var.data_bucket_name
  landing_bucket_name    = var.landing_bucket_name
  image                  = var.image
  vpc_subnet_ids         = var.vpc_subnet_ids
  vpc_security_group_ids = var.vpc_security_group_ids
  topology_file          = var.topology_file
  worker_topology        = var.worker_topology
  job_policy_statements  = var.job_policy_statements
  job_workers            = var.job_workers
  batch_window           = var.batch_window
  etl_error_emails       = var.etl_error_emails
  schedule_enabled       = var.schedule_enabled
  schedule_expression    = var.schedule_expression
  schedule_state_machine = var.schedule_state_machine
  schedule_input         = var.schedule_input
}

variable "region" {
  description = "AWS region of the stack (the provider's)."
  type        = string
}

variable "stack" {
  description = "The module's stack (name prefix of every resource, WORKER_STACK)."
  type        = string
  default     = "taskbridge"
}

variable "data_bucket_name" {
  description = "The module's data_bucket_name."
  type        = string
}

variable "landing_bucket_name" {
  description = "The module's landing_bucket_name."
  type        = string
}

variable "image" {
  description = "The module's image (the worker's, or yours built on it)."
  type        = string
}

variable "vpc_subnet_ids" {
  description = "The module's vpc_subnet_ids."
  type        = list(string)
}

variable "vpc_security_group_ids" {
  description = "The module's vpc_security_group_ids."
  type        = list(string)
}

variable "topology_file" {
  description = "The module's topology_file (relative paths are read from this folder); empty: the shipped topology."
  type        = string
  default     = ""
}

variable "worker_topology" {
  description = "The module's worker_topology: the same file's path inside the image; required with topology_file."
  type        = string
  default     = ""
}

variable "job_policy_statements" {
  description = "The module's job_policy_statements."
  type = list(object({
    sid       = optional(string)
    effect    = optional(string, "Allow")
    actions   = list(string)
    resources = list(string)
  }))
  default = []
}

variable "job_workers" {
  description = "The module's job_workers."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 1, desired = 1, max = 10 }
}

variable "batch_window" {
  description = "The module's batch_window."
  type        = string
  default     = "15m"
}

variable "etl_error_emails" {
  description = "The module's etl_error_emails."
  type        = list(string)
  default     = []
}

variable "schedule_enabled" {
  description = "The module's schedule_enabled."
  type        = bool
  default     = false
}

variable "schedule_expression" {
  description = "The module's schedule_expression."
  type        = string
  default     = "cron(0 6 * * ? *)"
}

variable "schedule_state_machine" {
  description = "The module's schedule_state_machine."
  type        = string
  default     = "cookies"
}

variable "schedule_input" {
  description = "The module's schedule_input."
  type        = string
  default     = "{\"count\":10}"
}

output "taskbridge" {
  description = "Every output of the module (event_bus, buckets, state_machines, queues, dlqs, ...)."
  value       = module.taskbridge
}

resource "aws_ecs_cluster" "this" {
  name = var.stack
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "worker" {
  name              = "/ecs/${var.stack}/worker"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn != "" ? var.kms_key_arn : null
}

locals {
  # Two services share the task definition shape; WORKER_ROLES splits the work:
  # many job workers, one batcher. Batchers may overlap (a deploy runs old and new
  # side by side): each landing file is claimed with an S3 conditional write before
  # it enters a manifest, so it lands in one run whichever batcher holds it. A
  # service exists only if the topology has queues for it.
  roles = merge(
    length(local.job_queues) > 0 ? { jobs = { roles = "jobs", desired = var.job_workers.desired } } : {},
    length(local.batch_queues) > 0 ? { batch = { roles = "batch", desired = 1 } } : {},
  )
}

resource "aws_ecs_task_definition" "worker" {
  for_each                 = local.roles
  family                   = "${var.stack}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  container_definitions = jsonencode([{
    name                   = local.container_name
    image                  = var.image
    essential              = true
    command                = ["run"]
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    # The worker's shutdown timeout plus the stop budget's ECSStopMargin
    # (internal/config/stop.go; deploy's TestTerraformStopTimeoutIsTheBudgets
    # checks they agree): the spans' flush and the exit fit in it, so ECS never
    # SIGKILLs a stop (Fargate's ceiling is 120 s: see var.shutdown_timeout_seconds).
    stopTimeout = var.shutdown_timeout_seconds + 5
    # An init process as PID 1 reaps an exec job's orphaned children.
    linuxParameters = { initProcessEnabled = true }
    environment     = concat(local.worker_environment, [{ name = "WORKER_ROLES", value = each.value.roles }])
    portMappings    = [{ containerPort = 9090, protocol = "tcp" }]
    healthCheck = {
      command     = ["CMD", "/worker", "healthcheck"]
      interval    = 15
      timeout     = 3
      retries     = 3
      startPeriod = 10
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.worker.name
        awslogs-region        = local.region
        awslogs-stream-prefix = each.key
      }
    }
  }])
}

resource "aws_ecs_service" "worker" {
  for_each        = local.roles
  name            = "${var.stack}-${each.key}"
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.worker[each.key].arn
  desired_count   = each.value.desired
  launch_type     = "FARGATE"
  # Both overlap in a deploy, so there is no window without a batcher: the new task
  # is healthy before the old one is stopped (claims keep batches apart).
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  network_configuration {
    subnets          = var.vpc_subnet_ids
    security_groups  = var.vpc_security_group_ids
    assign_public_ip = false
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  lifecycle {
    ignore_changes = [desired_count] # owned by autoscaling
  }
}

# Job workers scale on backlog per task: messages of the job queues, visible and in
# flight (a running job holds its message not visible), divided by running tasks,
# kept near backlog_per_task. Counting in-flight messages keeps busy tasks from
# looking idle; scale-in protection, which a worker holds while it has messages in
# hand, keeps a scale-in that still comes from stopping them mid-job.
resource "aws_appautoscaling_target" "jobs" {
  count              = length(local.job_queues) > 0 ? 1 : 0
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.worker["jobs"].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.job_workers.min
  max_capacity       = var.job_workers.max
}

resource "aws_appautoscaling_policy" "jobs_backlog" {
  count              = length(local.job_queues) > 0 ? 1 : 0
  name               = "${var.stack}-jobs-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.jobs[0].service_namespace
  resource_id        = aws_appautoscaling_target.jobs[0].resource_id
  scalable_dimension = aws_appautoscaling_target.jobs[0].scalable_dimension
  target_tracking_scaling_policy_configuration {
    target_value       = var.backlog_per_task
    scale_in_cooldown  = 120
    scale_out_cooldown = 30
    customized_metric_specification {
      dynamic "metrics" {
        for_each = { for pair in setproduct(keys(local.job_queues), ["visible", "in_flight"]) : "${pair[1]}_${lower(replace(pair[0], "/[^A-Za-z0-9]/", "_"))}" => pair }
        content {
          id          = metrics.key
          return_data = false
          metric_stat {
            stat = "Sum"
            metric {
              namespace   = "AWS/SQS"
              metric_name = metrics.value[1] == "visible" ? "ApproximateNumberOfMessagesVisible" : "ApproximateNumberOfMessagesNotVisible"
              dimensions {
                name  = "QueueName"
                value = aws_sqs_queue.queue[metrics.value[0]].name
              }
            }
          }
        }
      }
      metrics {
        id          = "tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.worker["jobs"].name
            }
          }
        }
      }
      metrics {
        id          = "backlog_per_task"
        label       = "messages (visible + in flight) per running task"
        expression  = "(${join(" + ", [for pair in setproduct(keys(local.job_queues), ["visible", "in_flight"]) : "${pair[1]}_${lower(replace(pair[0], "/[^A-Za-z0-9]/", "_"))}"])}) / MAX([tasks, 1])"
        return_data = true
      }
    }
  }
}

terraform {
  # 1.9: a variable's validation may name another variable (topology_file needs
  # worker_topology).
  required_version = ">= 1.9.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}

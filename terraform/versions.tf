terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      # 6.28: QUIC listeners and target groups with server IDs on network
      # load balancers (lb_mode = "quic"); see README.md, "Load balancer modes".
      version = ">= 6.28, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = merge({ "horizon:deployment" = var.name }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

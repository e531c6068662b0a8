# Inputs of the Horizon telemetry deployment. Required ones have no default;
# terraform.tfvars.example shows a complete set.

variable "name" {
  description = "Name of this deployment; prefixes every resource name (lowercase letters, digits and dashes)."
  type        = string
  default     = "horizon-telemetry"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2 to 31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "region" {
  description = "AWS region of the deployment."
  type        = string
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# --- network -----------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the relays and the load balancer."
  type        = string
}

variable "lb_subnet_ids" {
  description = "Subnets of the UDP network load balancer, one per availability zone (public subnets for agents on the internet, private ones for agents inside the VPC or over a peering)."
  type        = list(string)
  validation {
    condition     = length(var.lb_subnet_ids) >= 2
    error_message = "Give at least two subnets in different availability zones."
  }
}

variable "lb_internal" {
  description = "Whether the load balancer is internal (agents reach it over private addressing)."
  type        = bool
  default     = true
}

variable "lb_mode" {
  description = "How the load balancer routes agents to relays: \"udp\" (a UDP listener; each flow, by address and port, sticks to one relay) or \"quic\" (a QUIC listener; packets are routed by the server ID each relay writes into its connection IDs, so an agent keeps its relay when its address or port changes). terraform/README.md compares the two."
  type        = string
  default     = "udp"
  validation {
    condition     = contains(["udp", "quic"], var.lb_mode)
    error_message = "lb_mode must be \"udp\" or \"quic\"."
  }
}

variable "lb_ip_address_type" {
  description = "Address family of the load balancer: ipv4 or dualstack (dualstack is not allowed with lb_mode = \"quic\": AWS offers QUIC listeners on IPv4 load balancers only)."
  type        = string
  default     = "ipv4"
  validation {
    condition     = contains(["ipv4", "dualstack"], var.lb_ip_address_type)
    error_message = "lb_ip_address_type must be ipv4 or dualstack."
  }
}

variable "relay_subnet_ids" {
  description = "Private subnets of the relay instances (they need a route to S3, InfluxDB and Secrets Manager: NAT or VPC endpoints)."
  type        = list(string)
  validation {
    condition     = length(var.relay_subnet_ids) >= 2
    error_message = "Give at least two subnets in different availability zones."
  }
}

variable "agent_cidrs" {
  description = "Address ranges of the node agents, allowed to the QUIC port."
  type        = list(string)
}

variable "monitoring_cidrs" {
  description = "Address ranges of the Prometheus servers that scrape the relays' metrics port."
  type        = list(string)
  default     = []
}

# --- relays ------------------------------------------------------------------

variable "relay_port" {
  description = "UDP port of the QUIC listener, on the load balancer and the relays."
  type        = number
  default     = 5001
}

variable "relay_metrics_port" {
  description = "TCP port of /metrics, /healthz and /readyz on the relays (the load balancer's health check uses /readyz)."
  type        = number
  default     = 9091
}

variable "relay_binary_s3_uri" {
  description = "s3:// URI of the telemetry-relay binary built for Amazon Linux 2023 on x86_64 (terraform/README.md shows how to build and upload it)."
  type        = string
  validation {
    condition     = can(regex("^s3://[^/]+/.+", var.relay_binary_s3_uri))
    error_message = "relay_binary_s3_uri must look like s3://bucket/path/telemetry-relay."
  }
}

variable "relay_instance_type" {
  description = "EC2 instance type of the relays. Compute-optimised types with enhanced networking suit QUIC."
  type        = string
  default     = "c7i.xlarge"
}

variable "relay_min_size" {
  description = "Fewest relays."
  type        = number
  default     = 3
}

variable "relay_max_size" {
  description = "Most relays."
  type        = number
  default     = 30
}

variable "relay_target_cpu_percent" {
  description = "Average CPU the relay fleet's target-tracking policy aims at."
  type        = number
  default     = 55
}

variable "relay_max_connections" {
  description = "server.max_connections of each relay (agents beyond it are refused and retry through the load balancer)."
  type        = number
  default     = 5000
}

variable "relay_max_cardinality" {
  description = "limits.max_cardinality of each relay (live series across all its nodes)."
  type        = number
  default     = 2000000
}

variable "relay_max_series_per_node" {
  description = "budgets.max_series_per_node of each relay."
  type        = number
  default     = 10000
}

variable "relay_drain_grace_secs" {
  description = "server.drain_grace_secs: on scale-in or stop, how long agents get to finish after GoAway."
  type        = number
  default     = 5
}

variable "relay_drain_flush_secs" {
  description = "server.drain_flush_secs: then how long the sinks get to store what they hold."
  type        = number
  default     = 10
}

variable "tls_cert_secret_arn" {
  description = "Secrets Manager secret (plain text PEM) holding the relays' server certificate chain; its names must include the name agents connect to (the load balancer's DNS name or your record for it)."
  type        = string
}

variable "tls_key_secret_arn" {
  description = "Secrets Manager secret (plain text PEM) holding the relays' server private key."
  type        = string
}

variable "node_ca_secret_arn" {
  description = "Secrets Manager secret (plain text PEM) holding the CA certificate(s) that issue node (agent) certificates."
  type        = string
}

variable "secrets_kms_key_arn" {
  description = "KMS key that encrypts those secrets, if not the AWS managed key; the relays get kms:Decrypt on it."
  type        = string
  default     = ""
}

variable "influxdb_url" {
  description = "InfluxDB base URL for the relays' line-protocol sink; empty turns the sink off."
  type        = string
  default     = ""
}

variable "influxdb_org" {
  description = "InfluxDB v2 organisation."
  type        = string
  default     = ""
}

variable "influxdb_bucket" {
  description = "InfluxDB v2 bucket."
  type        = string
  default     = "telemetry"
}

variable "influxdb_token_secret_arn" {
  description = "Secrets Manager secret (plain text) holding the InfluxDB v2 token; required when influxdb_url is set."
  type        = string
  default     = ""
}

# --- storage -----------------------------------------------------------------

variable "bucket_name" {
  description = "S3 bucket for raw micro-batches and the compacted dataset (created here)."
  type        = string
}

variable "prefix" {
  description = "Key prefix inside the bucket: relays write <prefix>/raw/, the compactor <prefix>/compacted/."
  type        = string
  default     = "telemetry"
  validation {
    condition     = can(regex("^[a-zA-Z0-9][a-zA-Z0-9_.-]*(/[a-zA-Z0-9][a-zA-Z0-9_.-]*)*$", var.prefix))
    error_message = "prefix must be one or more path segments without leading, trailing or double slashes."
  }
}

variable "noncurrent_version_days" {
  description = "Days the bucket keeps overwritten or deleted object versions (protection against mistakes)."
  type        = number
  default     = 7
}

variable "quarantine_retention_days" {
  description = "Days unreadable raw objects moved to <prefix>/raw/_quarantine/ are kept for inspection."
  type        = number
  default     = 30
}

variable "force_destroy" {
  description = "Let terraform destroy delete the bucket with its data. Keep false in production."
  type        = bool
  default     = false
}

# --- compactor ---------------------------------------------------------------

variable "compactor_image_uri" {
  description = "ECR image URI of the compactor's Lambda image (infra/docker/compactor-lambda.Dockerfile)."
  type        = string
}

variable "compactor_memory_mb" {
  description = "Memory of the compactor function, MB. HORIZON_SORT_MEMORY is set to a third of it."
  type        = number
  default     = 3008
  validation {
    condition     = var.compactor_memory_mb >= 512 && var.compactor_memory_mb <= 10240
    error_message = "compactor_memory_mb must be between 512 and 10240."
  }
}

variable "compactor_shards" {
  description = "HORIZON_SHARDS: node shards each hour is split into (units run in parallel). An hour keeps the count it was first compacted with."
  type        = number
  default     = 1
  validation {
    condition     = var.compactor_shards >= 1 && var.compactor_shards <= 4096
    error_message = "compactor_shards must be between 1 and 4096."
  }
}

variable "compactor_max_concurrency" {
  description = "Compactor invocations running at once (the fan-out's map concurrency and the function's reserved concurrency)."
  type        = number
  default     = 8
}

variable "compactor_schedule" {
  description = "EventBridge schedule of the compaction run. The default runs at minute 20, once an hour has been closed for the allowed lateness (15 min)."
  type        = string
  default     = "cron(20 * * * ? *)"
}

variable "compactor_allowed_lateness_secs" {
  description = "HORIZON_ALLOWED_LATENESS_SECS: an hour is compacted once it ended this long ago."
  type        = number
  default     = 900
}

variable "raw_retention_days" {
  description = "0: the compactor deletes raw objects once folded (default). N > 0: it keeps them (HORIZON_RAW_RETENTION=keep) and a lifecycle rule deletes <prefix>/raw/ objects after N days."
  type        = number
  default     = 0
}

# --- Athena --------------------------------------------------------------------

variable "lake_start_date" {
  description = "First day (YYYY-MM-DD, UTC) the Athena tables project partitions for. Earlier days are not queryable through them."
  type        = string
  default     = "2026-01-01"
  validation {
    condition     = can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", var.lake_start_date))
    error_message = "lake_start_date must be a date written YYYY-MM-DD."
  }
}

variable "athena_raw_table" {
  description = "Also create a table over the raw micro-batches (hours not compacted yet; duplicates possible)."
  type        = bool
  default     = true
}

variable "athena_bytes_scanned_cutoff" {
  description = "Bytes one query of the Athena workgroup may scan before Athena cancels it (at least 10 MB)."
  type        = number
  default     = 107374182400
  validation {
    condition     = var.athena_bytes_scanned_cutoff >= 10485760
    error_message = "athena_bytes_scanned_cutoff must be at least 10485760 (10 MB), Athena's minimum."
  }
}

variable "athena_results_retention_days" {
  description = "Days Athena query results are kept under <prefix>/athena-results/."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "Retention of the compactor's and the fan-out's CloudWatch logs."
  type        = number
  default     = 30
}

variable "alarm_topic_arn" {
  description = "SNS topic for the deployment's alarms (empty: alarms without actions)."
  type        = string
  default     = ""
}

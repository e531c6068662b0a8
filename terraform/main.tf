locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  raw_prefix       = "${var.prefix}/raw"
  compacted_prefix = "${var.prefix}/compacted"
  rollups_prefix   = "${var.prefix}/rollups" # the compactor's HORIZON_ROLLUP_PREFIX (docs/data.md, "Rollups")
  store_url        = "s3://${aws_s3_bucket.data.bucket}/${var.prefix}"

  influxdb_enabled = var.influxdb_url != ""
  secret_arns = compact([
    var.tls_cert_secret_arn,
    var.tls_key_secret_arn,
    var.node_ca_secret_arn,
    var.influxdb_token_secret_arn,
  ])
}

check "influxdb_token" {
  assert {
    condition     = !local.influxdb_enabled || var.influxdb_token_secret_arn != ""
    error_message = "influxdb_url is set: give influxdb_token_secret_arn too."
  }
}

check "drain_fits_the_lifecycle_hook" {
  assert {
    condition     = var.relay_drain_grace_secs + var.relay_drain_flush_secs + 3 < 120
    error_message = "relay drain (grace + flush + 3 s) must end well within the 120 s scale-in hook."
  }
}

# Trust policies of the deployment's roles, one per AWS service.
data "aws_iam_policy_document" "assume" {
  for_each = toset(["ec2", "lambda", "states", "events"])
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["${each.key}.amazonaws.com"]
    }
  }
}

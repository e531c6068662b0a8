# The compactor: one Lambda function (container image) that either compacts
# every closed hour or one targeted unit, and a Step Functions state machine
# that an hourly EventBridge schedule starts: it plans the units with a dry
# run and fans them out across parallel invocations (docs/compaction.md).

locals {
  compactor_name = "${var.name}-compactor"
  # The merge's sort buffers take a third of the function's memory; the rest
  # is for decoding, the k-way merge and the file being written.
  sort_memory_mib = floor(var.compactor_memory_mb / 3)
}

resource "aws_cloudwatch_log_group" "compactor" {
  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days input (30 days by default); a year of debug logs is rarely wanted.
  name              = "/aws/lambda/${local.compactor_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_iam_role" "compactor" {
  name               = local.compactor_name
  assume_role_policy = data.aws_iam_policy_document.assume["lambda"].json
}

data "aws_iam_policy_document" "compactor" {
  statement {
    sid       = "ListTheDataset"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.prefix}/*"]
    }
  }
  statement {
    sid = "ReadWriteTheDataset"
    # Raw objects are read, deleted or quarantined; compacted files, rollup
    # files (<prefix>/rollups/), manifests and leases are written
    # (create-only) and superseded ones deleted.
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
    ]
    resources = ["${aws_s3_bucket.data.arn}/${var.prefix}/*"]
  }
  statement {
    sid       = "EncryptTheDataset"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.compactor.arn}:*"]
  }
}

resource "aws_iam_role_policy" "compactor" {
  name   = "compactor"
  role   = aws_iam_role.compactor.id
  policy = data.aws_iam_policy_document.compactor.json
}

resource "aws_lambda_function" "compactor" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously by the state machine, which retries and alarms; a dead-letter queue applies to asynchronous invocations only.
  #checkov:skip=CKV_AWS_117:Talks only to S3, KMS and CloudWatch Logs over their public endpoints; no VPC resource to reach.
  #checkov:skip=CKV_AWS_272:Code signing applies to .zip packages; this is a container image from ECR.
  #checkov:skip=CKV_AWS_50:X-Ray tracing adds nothing to one long batch job; progress and errors are in its logs and the state machine's history.
  function_name = local.compactor_name
  description   = "Horizon telemetry compactor: merges raw micro-batches into hourly Parquet"
  role          = aws_iam_role.compactor.arn
  package_type  = "Image"
  image_uri     = var.compactor_image_uri
  architectures = ["x86_64"]
  memory_size   = var.compactor_memory_mb
  timeout       = 900
  kms_key_arn   = aws_kms_key.data.arn

  # Sort spills and the file being written go to /tmp.
  ephemeral_storage {
    size = 10240
  }

  reserved_concurrent_executions = var.compactor_max_concurrency

  environment {
    variables = {
      HORIZON_STORE_URL               = local.store_url
      HORIZON_S3_REGION               = var.region
      HORIZON_RAW_PREFIX              = "raw"
      HORIZON_COMPACTED_PREFIX        = "compacted"
      HORIZON_ROLLUP_PREFIX           = "rollups"
      HORIZON_SHARDS                  = tostring(var.compactor_shards)
      HORIZON_SORT_MEMORY             = "${local.sort_memory_mib}MiB"
      HORIZON_ALLOWED_LATENESS_SECS   = tostring(var.compactor_allowed_lateness_secs)
      HORIZON_RAW_RETENTION           = var.raw_retention_days > 0 ? "keep" : "delete"
      HORIZON_LEASE_SECS              = "1800"
      HORIZON_LAMBDA_STOP_MARGIN_SECS = "300"
      HORIZON_WORK_DIR                = "/tmp"
      HORIZON_LOG_FORMAT              = "json"
    }
  }

  depends_on = [aws_cloudwatch_log_group.compactor, aws_iam_role_policy.compactor]
}

# --- fan-out -----------------------------------------------------------------

resource "aws_cloudwatch_log_group" "fanout" {
  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days input.
  name              = "/aws/vendedlogs/states/${local.compactor_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_iam_role" "fanout" {
  name               = "${local.compactor_name}-fanout"
  assume_role_policy = data.aws_iam_policy_document.assume["states"].json
}

data "aws_iam_policy_document" "fanout" {
  statement {
    sid       = "InvokeTheCompactor"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.compactor.arn, "${aws_lambda_function.compactor.arn}:*"]
  }
  statement {
    sid = "DeliverExecutionLogs"
    # CloudWatch Logs delivery for Step Functions works on account-level
    # log-delivery resources, which take no narrower resource.
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "fanout" {
  name   = "fanout"
  role   = aws_iam_role.fanout.id
  policy = data.aws_iam_policy_document.fanout.json
}

resource "aws_sfn_state_machine" "fanout" {
  #checkov:skip=CKV_AWS_284:X-Ray tracing adds little to a two-step fan-out; the execution history and logs show each unit.
  name     = "${local.compactor_name}-fanout"
  role_arn = aws_iam_role.fanout.arn
  definition = templatefile("${path.module}/templates/compactor-fanout.asl.json.tftpl", {
    function_arn    = aws_lambda_function.compactor.arn
    max_concurrency = var.compactor_max_concurrency
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.fanout.arn}:*"
    include_execution_data = true # inputs and outputs are unit names and row counts; no secrets
    level                  = "ALL"
  }
}

# --- schedule ----------------------------------------------------------------

resource "aws_cloudwatch_event_rule" "compaction" {
  name                = "${local.compactor_name}-schedule"
  description         = "Compact the telemetry hours that have closed"
  schedule_expression = var.compactor_schedule
}

resource "aws_iam_role" "schedule" {
  name               = "${local.compactor_name}-schedule"
  assume_role_policy = data.aws_iam_policy_document.assume["events"].json
}

data "aws_iam_policy_document" "schedule" {
  statement {
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.fanout.arn]
  }
}

resource "aws_iam_role_policy" "schedule" {
  name   = "start-fanout"
  role   = aws_iam_role.schedule.id
  policy = data.aws_iam_policy_document.schedule.json
}

resource "aws_cloudwatch_event_target" "compaction" {
  rule     = aws_cloudwatch_event_rule.compaction.name
  arn      = aws_sfn_state_machine.fanout.arn
  role_arn = aws_iam_role.schedule.arn
}

# The lake in Athena, with no crawler: a Glue database with a table over the
# compacted dataset (and, optionally, one over the raw micro-batches) whose
# partitions are projected from the key layout (dt=YYYY-MM-DD/hour=HH), so a
# new hour is queryable the moment the compactor writes it: no MSCK REPAIR,
# no ALTER TABLE ADD PARTITION. Two more tables read the rollups the
# compactor writes beside it: rollups_1m (dt, hour) and rollups_1h (dt, one
# set of files per closed day). Columns: docs/data.md (a test holds them
# against the docs and against what pyarrow reads from real compacted and
# rollup files).
# Queries go through a workgroup that encrypts results with the bucket's key
# and stops any query past a byte-scanned limit.

locals {
  glue_database  = replace("${var.name}_telemetry", "-", "_")
  results_prefix = "${var.prefix}/athena-results"

  # The raw schema, version 1 (docs/data.md), in Hive DDL types. Arrow
  # dictionary<int32, utf8> columns are plain strings in Parquet.
  lake_columns = [
    { name = "node", type = "string", comment = "node identity from its client certificate" },
    { name = "metric", type = "string", comment = "metric name" },
    { name = "labels", type = "map<string,string>", comment = "labels, keys ascending; node is never among them" },
    { name = "series_id", type = "bigint", comment = "XXH3-64 of metric and canonical labels (docs/data.md)" },
    { name = "time", type = "timestamp", comment = "event time (UTC; nanoseconds in the files)" },
    { name = "value", type = "double", comment = "value (always finite)" },
    { name = "received_at", type = "timestamp", comment = "when a relay received the point (UTC)" },
    { name = "relay", type = "string", comment = "relay that wrote the raw object" },
    { name = "metric_type", type = "string", comment = "counter, gauge, histogram, summary or unknown (schema version 2; NULL in a version-1 file, read it as unknown)" },
  ]

  # The rollup schema, version 1 (docs/data.md, "Rollup schema"): both
  # levels. Quote the aggregates' names in SQL ("count", "sum", "min",
  # "max"): they are also function names.
  rollup_columns = [
    { name = "node", type = "string", comment = "node identity" },
    { name = "metric", type = "string", comment = "metric name" },
    { name = "labels", type = "map<string,string>", comment = "labels, as in the compacted rows" },
    { name = "series_id", type = "bigint", comment = "series identity, as in the compacted rows" },
    { name = "metric_type", type = "string", comment = "counter, gauge, histogram, summary or unknown" },
    { name = "interval_start", type = "timestamp", comment = "start of the interval: the minute, or the hour (UTC)" },
    { name = "count", type = "bigint", comment = "samples in the interval" },
    { name = "sum", type = "double", comment = "sum of their values (mean = sum / count)" },
    { name = "min", type = "double", comment = "least value" },
    { name = "max", type = "double", comment = "greatest value" },
    { name = "first", type = "double", comment = "value of the earliest sample" },
    { name = "first_time", type = "timestamp", comment = "its time" },
    { name = "last", type = "double", comment = "value of the latest sample" },
    { name = "last_time", type = "timestamp", comment = "its time" },
    { name = "increase", type = "double", comment = "reset-aware increase; null for gauges" },
    { name = "increase_assumed", type = "boolean", comment = "type unknown: increase computed as if a counter" },
  ]

  # Partition projection: every day from lake_start_date until now, and for
  # hourly tables every hour of it.
  day_projection = {
    "projection.enabled"          = "true"
    "projection.dt.type"          = "date"
    "projection.dt.format"        = "yyyy-MM-dd"
    "projection.dt.range"         = "${var.lake_start_date},NOW"
    "projection.dt.interval"      = "1"
    "projection.dt.interval.unit" = "DAYS"
    "classification"              = "parquet"
    "parquet.compression"         = "SNAPPY"
  }
  hour_projection = {
    "projection.hour.type"   = "integer"
    "projection.hour.range"  = "0,23"
    "projection.hour.digits" = "2"
  }
  lake_projection = merge(local.day_projection, local.hour_projection)

  lake_tables = merge(
    {
      compacted = {
        prefix      = local.compacted_prefix
        description = "Hourly compacted telemetry: each (node, series_id, time) once. Written by the compactor."
      }
    },
    var.athena_raw_table ? {
      raw = {
        prefix      = local.raw_prefix
        description = "Raw micro-batches of the relays, for the hours not yet compacted. May hold duplicates (delivery is at least once)."
      }
    } : {}
  )

  # The rollups (docs/data.md, "Rollups"): minutes per hour partition; the
  # 1-hour level in one set of files per closed day, so a 90-day query
  # opens about 90 files. The current day is in rollups_1m only.
  rollup_tables = {
    rollups_1m = {
      prefix         = "${local.rollups_prefix}/1m"
      partitions     = ["dt", "hour"]
      partition_path = "dt=$${dt}/hour=$${hour}/"
      projection     = local.lake_projection
      description    = "Per-series 1-minute rollups (count, sum, min, max, first, last, increase) of every compacted hour. Written by the compactor."
    }
    rollups_1h = {
      prefix         = "${local.rollups_prefix}/1h"
      partitions     = ["dt"]
      partition_path = "dt=$${dt}/"
      projection     = local.day_projection
      description    = "Per-series 1-hour rollups of every closed day (the current day is in rollups_1m). Written by the compactor."
    }
  }
  partition_comments = {
    dt   = "UTC event day, YYYY-MM-DD"
    hour = "UTC event hour, 00 to 23"
  }
}

resource "aws_glue_catalog_database" "lake" {
  name        = local.glue_database
  description = "${var.name}: GPU telemetry (docs/data.md)"
}

resource "aws_glue_catalog_table" "lake" {
  for_each      = local.lake_tables
  database_name = aws_glue_catalog_database.lake.name
  name          = each.key
  description   = each.value.description
  table_type    = "EXTERNAL_TABLE"

  parameters = merge(local.lake_projection, {
    "EXTERNAL"                  = "TRUE"
    "storage.location.template" = "s3://${aws_s3_bucket.data.bucket}/${each.value.prefix}/dt=$${dt}/hour=$${hour}/"
  })

  partition_keys {
    name    = "dt"
    type    = "string"
    comment = local.partition_comments["dt"]
  }
  partition_keys {
    name    = "hour"
    type    = "string"
    comment = local.partition_comments["hour"]
  }

  storage_descriptor {
    location      = "s3://${aws_s3_bucket.data.bucket}/${each.value.prefix}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters = {
        "serialization.format" = "1"
      }
    }

    dynamic "columns" {
      for_each = local.lake_columns
      content {
        name    = columns.value.name
        type    = columns.value.type
        comment = columns.value.comment
      }
    }
  }
}

resource "aws_glue_catalog_table" "rollups" {
  for_each      = local.rollup_tables
  database_name = aws_glue_catalog_database.lake.name
  name          = each.key
  description   = each.value.description
  table_type    = "EXTERNAL_TABLE"

  parameters = merge(each.value.projection, {
    "EXTERNAL"                  = "TRUE"
    "storage.location.template" = "s3://${aws_s3_bucket.data.bucket}/${each.value.prefix}/${each.value.partition_path}"
  })

  dynamic "partition_keys" {
    for_each = each.value.partitions
    content {
      name    = partition_keys.value
      type    = "string"
      comment = local.partition_comments[partition_keys.value]
    }
  }

  storage_descriptor {
    location      = "s3://${aws_s3_bucket.data.bucket}/${each.value.prefix}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters = {
        "serialization.format" = "1"
      }
    }

    dynamic "columns" {
      for_each = local.rollup_columns
      content {
        name    = columns.value.name
        type    = columns.value.type
        comment = columns.value.comment
      }
    }
  }
}

resource "aws_athena_workgroup" "lake" {
  name          = "${var.name}-telemetry"
  description   = "Queries over the telemetry lake: results encrypted with the deployment's key, scans capped."
  force_destroy = var.force_destroy

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "s3://${aws_s3_bucket.data.bucket}/${local.results_prefix}/"
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.data.arn
      }
    }
  }
}

# The documented example queries (docs/athena.md), saved in the workgroup.
# Each file is also run by the tests with DuckDB against a real compacted
# hour (the compacted table) or day (the rollup tables), so the SQL is known
# to run on the columns above.
resource "aws_athena_named_query" "lake" {
  for_each = toset([
    "points_per_metric_per_hour",
    "node_gpu_temperature_over_a_day",
    "top_nodes_by_power",
    "gpu_hours_busy_per_node_per_day",
    "peak_gpu_temperature_per_gpu_per_day",
    "idle_gpus",
  ])
  name        = replace(each.key, "_", " ")
  workgroup   = aws_athena_workgroup.lake.id
  database    = aws_glue_catalog_database.lake.name
  description = "Example from docs/athena.md"
  query       = file("${path.module}/queries/${each.key}.sql")
}

# What a reader of the lake needs, as a policy to attach to analysts' roles.
data "aws_iam_policy_document" "lake_reader" {
  statement {
    sid = "RunQueries"
    actions = [
      "athena:StartQueryExecution",
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:StopQueryExecution",
      "athena:GetWorkGroup",
      "athena:ListNamedQueries",
      "athena:GetNamedQuery",
    ]
    resources = [aws_athena_workgroup.lake.arn]
  }
  statement {
    sid     = "ReadCatalog"
    actions = ["glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartition", "glue:GetPartitions"]
    resources = [
      "arn:${local.partition}:glue:${var.region}:${local.account_id}:catalog",
      aws_glue_catalog_database.lake.arn,
      "arn:${local.partition}:glue:${var.region}:${local.account_id}:table/${aws_glue_catalog_database.lake.name}/*",
    ]
  }
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.data.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.compacted_prefix}/*", "${local.rollups_prefix}/*", "${local.raw_prefix}/*", "${local.results_prefix}/*"]
    }
  }
  statement {
    sid     = "ReadLake"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.data.arn}/${local.compacted_prefix}/*",
      "${aws_s3_bucket.data.arn}/${local.rollups_prefix}/*",
      "${aws_s3_bucket.data.arn}/${local.raw_prefix}/*",
    ]
  }
  statement {
    sid       = "WriteResults"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.data.arn}/${local.results_prefix}/*"]
  }
  statement {
    sid       = "UseKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_policy" "lake_reader" {
  name        = "${var.name}-lake-reader"
  description = "Query the telemetry lake through the ${var.name}-telemetry Athena workgroup."
  policy      = data.aws_iam_policy_document.lake_reader.json
}

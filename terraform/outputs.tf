output "relay_endpoint" {
  description = "Where agents connect (UDP, QUIC): the load balancer's DNS name and port. The relays' server certificate must name it (or your DNS record for it)."
  value       = "${aws_lb.relay.dns_name}:${var.relay_port}"
}

output "bucket" {
  description = "The telemetry bucket."
  value       = aws_s3_bucket.data.bucket
}

output "raw_objects" {
  description = "Where relays write raw micro-batches."
  value       = "s3://${aws_s3_bucket.data.bucket}/${local.raw_prefix}/"
}

output "compacted_dataset" {
  description = "The hourly Parquet dataset (hive partitions dt=/hour=) for DuckDB, Athena, Spark, polars or pyarrow."
  value       = "s3://${aws_s3_bucket.data.bucket}/${local.compacted_prefix}/"
}

output "rollups_dataset" {
  description = "Per-series rollups for DuckDB, Athena, Spark, polars or pyarrow: 1m/ (hive partitions dt=/hour=) and 1h/ (dt=, one set of files per closed day)."
  value       = "s3://${aws_s3_bucket.data.bucket}/${local.rollups_prefix}/"
}

output "compactor_function" {
  description = "The compactor Lambda function (invoke it with {\"hour\": \"YYYY-MM-DDTHH\"} for a backfill of one hour)."
  value       = aws_lambda_function.compactor.function_name
}

output "compaction_state_machine" {
  description = "The hourly fan-out; start an execution by hand to compact now."
  value       = aws_sfn_state_machine.fanout.arn
}

output "relay_autoscaling_group" {
  description = "The relays' Auto Scaling group (start an instance refresh to roll out a new binary)."
  value       = aws_autoscaling_group.relay.name
}

output "athena_database" {
  description = "The Glue database of the lake's Athena tables (compacted, rollups_1m, rollups_1h, and raw unless athena_raw_table is false); partitions are projected, no crawler needed."
  value       = aws_glue_catalog_database.lake.name
}

output "athena_workgroup" {
  description = "The Athena workgroup to query the lake with (encrypted results, byte-scanned limit); docs/athena.md has example queries."
  value       = aws_athena_workgroup.lake.name
}

output "lake_reader_policy_arn" {
  description = "IAM policy to attach to the roles of people and tools that query the lake through the workgroup."
  value       = aws_iam_policy.lake_reader.arn
}

# Alarms an operator wants paged on. Actions go to alarm_topic_arn when set.

locals {
  alarm_actions = var.alarm_topic_arn != "" ? [var.alarm_topic_arn] : []
}

resource "aws_cloudwatch_metric_alarm" "compaction_failed" {
  alarm_name          = "${local.compactor_name}-run-failed"
  alarm_description   = "A compaction run failed after its retries: an hour is not compacted (its raw objects are kept; the next run retries). See the state machine's execution history and the function's logs."
  namespace           = "AWS/States"
  metric_name         = "ExecutionsFailed"
  dimensions          = { StateMachineArn = aws_sfn_state_machine.fanout.arn }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "compaction_not_running" {
  alarm_name          = "${local.compactor_name}-not-running"
  alarm_description   = "No compaction run started in three hours: check the EventBridge schedule and the state machine."
  namespace           = "AWS/States"
  metric_name         = "ExecutionsStarted"
  dimensions          = { StateMachineArn = aws_sfn_state_machine.fanout.arn }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 3
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "relays_unhealthy" {
  alarm_name          = "${var.name}-relays-unhealthy"
  alarm_description   = "Relays fail /readyz (draining, or object-store writes failing for 30 s): check their logs and horizon_relay_s3_put_errors_total."
  namespace           = "AWS/NetworkELB"
  metric_name         = "UnHealthyHostCount"
  dimensions = {
    LoadBalancer = aws_lb.relay.arn_suffix
    TargetGroup  = aws_lb_target_group.relay.arn_suffix
  }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "relays_none_healthy" {
  alarm_name          = "${var.name}-relays-none-healthy"
  alarm_description   = "No healthy relay behind the load balancer: agents cannot deliver (they buffer and retry)."
  namespace           = "AWS/NetworkELB"
  metric_name         = "HealthyHostCount"
  dimensions = {
    LoadBalancer = aws_lb.relay.arn_suffix
    TargetGroup  = aws_lb_target_group.relay.arn_suffix
  }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

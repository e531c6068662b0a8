# The relay fleet: an Auto Scaling group of Amazon Linux 2023 instances
# behind a network load balancer with a UDP listener. Each flow (agent
# address and port) sticks to one relay; relays share nothing.

locals {
  asg_name  = "${var.name}-relays"
  hook_name = "drain-on-terminate"

  # Seconds a relay needs to drain on SIGTERM (docs/sinks.md) plus margin.
  relay_drain_secs = var.relay_drain_grace_secs + var.relay_drain_flush_secs + 3

  influxdb_url_parts = local.influxdb_enabled ? regex("^(https?)://[^/:]+(?::([0-9]+))?", var.influxdb_url) : ["https", null]
  influxdb_port      = tonumber(coalesce(local.influxdb_url_parts[1], local.influxdb_url_parts[0] == "https" ? "443" : "80"))

  relay_config = templatefile("${path.module}/templates/relay.yaml.tftpl", {
    relay_port          = var.relay_port
    metrics_port        = var.relay_metrics_port
    max_connections     = var.relay_max_connections
    max_cardinality     = var.relay_max_cardinality
    max_series_per_node = var.relay_max_series_per_node
    drain_grace_secs    = var.relay_drain_grace_secs
    drain_flush_secs    = var.relay_drain_flush_secs
    store_url           = local.store_url
    region              = var.region
    influxdb_url        = var.influxdb_url
    influxdb_org        = var.influxdb_org
    influxdb_bucket     = var.influxdb_bucket
  })

  relay_user_data = templatefile("${path.module}/templates/relay-user-data.sh.tftpl", {
    region                    = var.region
    relay_binary_s3_uri       = var.relay_binary_s3_uri
    tls_cert_secret_arn       = var.tls_cert_secret_arn
    tls_key_secret_arn        = var.tls_key_secret_arn
    node_ca_secret_arn        = var.node_ca_secret_arn
    influxdb_token_secret_arn = local.influxdb_enabled ? var.influxdb_token_secret_arn : ""
    relay_config              = local.relay_config
    systemd_unit              = file("${path.module}/../infra/systemd/telemetry-relay.service")
    drain_script              = file("${path.module}/templates/scale-in-drain.sh")
    asg_name                  = local.asg_name
    hook_name                 = local.hook_name
  })
}

data "aws_ssm_parameter" "al2023" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

data "aws_subnet" "lb" {
  for_each = toset(var.lb_subnet_ids)
  id       = each.value
}

# --- network -----------------------------------------------------------------

resource "aws_security_group" "relay" {
  name        = "${var.name}-relay"
  description = "Horizon telemetry relays: QUIC from agents, metrics from the load balancer and Prometheus"
  vpc_id      = var.vpc_id
}

# The UDP load balancer keeps the agent's address, so agents reach the relays directly.
resource "aws_vpc_security_group_ingress_rule" "relay_quic" {
  for_each          = toset(var.agent_cidrs)
  security_group_id = aws_security_group.relay.id
  description       = "QUIC from node agents"
  ip_protocol       = "udp"
  from_port         = var.relay_port
  to_port           = var.relay_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "relay_health" {
  for_each          = data.aws_subnet.lb
  security_group_id = aws_security_group.relay.id
  description       = "Health checks (/readyz) from the load balancer in ${each.value.availability_zone}"
  ip_protocol       = "tcp"
  from_port         = var.relay_metrics_port
  to_port           = var.relay_metrics_port
  cidr_ipv4         = each.value.cidr_block
}

resource "aws_vpc_security_group_ingress_rule" "relay_metrics" {
  for_each          = toset(var.monitoring_cidrs)
  security_group_id = aws_security_group.relay.id
  description       = "Prometheus scrapes of /metrics"
  ip_protocol       = "tcp"
  from_port         = var.relay_metrics_port
  to_port           = var.relay_metrics_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "relay_https" {
  security_group_id = aws_security_group.relay.id
  description       = "HTTPS to S3, Secrets Manager and Auto Scaling"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "relay_influxdb" {
  count             = local.influxdb_enabled && local.influxdb_port != 443 ? 1 : 0
  security_group_id = aws_security_group.relay.id
  description       = "InfluxDB writes"
  ip_protocol       = "tcp"
  from_port         = local.influxdb_port
  to_port           = local.influxdb_port
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_lb" "relay" {
  #checkov:skip=CKV_AWS_91:NLB access logs cover TLS listeners only; a UDP listener has none to write.
  #checkov:skip=CKV2_AWS_28:WAF does not apply to network load balancers.
  name                             = "${var.name}-udp"
  load_balancer_type               = "network"
  internal                         = var.lb_internal
  subnets                          = var.lb_subnet_ids
  enable_cross_zone_load_balancing = true
  # Turn off by hand before a terraform destroy.
  enable_deletion_protection = true
}

resource "aws_lb_target_group" "relay" {
  name                 = "${var.name}-quic"
  vpc_id               = var.vpc_id
  protocol             = "UDP"
  port                 = var.relay_port
  target_type          = "instance"
  deregistration_delay = local.relay_drain_secs + 10
  # Flows to a deregistered relay keep going until the relay itself closes
  # them (GoAway on drain), so agents finish in-flight batches first.
  connection_termination = false

  health_check {
    protocol            = "HTTP"
    port                = tostring(var.relay_metrics_port)
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "relay" {
  load_balancer_arn = aws_lb.relay.arn
  protocol          = "UDP"
  port              = var.relay_port
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.relay.arn
  }
}

# --- instances ---------------------------------------------------------------

resource "aws_iam_role" "relay" {
  name               = "${var.name}-relay"
  assume_role_policy = data.aws_iam_policy_document.assume["ec2"].json
}

data "aws_iam_policy_document" "relay" {
  statement {
    sid       = "WriteRawObjects"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.data.arn}/${local.raw_prefix}/*"]
  }
  statement {
    sid       = "EncryptRawObjects"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
  statement {
    sid       = "FetchRelayBinary"
    actions   = ["s3:GetObject"]
    resources = ["arn:${local.partition}:s3:::${trimprefix(var.relay_binary_s3_uri, "s3://")}"]
  }
  statement {
    sid       = "ReadCertificatesAndToken"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secret_arns
  }
  dynamic "statement" {
    for_each = var.secrets_kms_key_arn != "" ? [var.secrets_kms_key_arn] : []
    content {
      sid       = "DecryptSecrets"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
  statement {
    sid       = "CompleteScaleInDrain"
    actions   = ["autoscaling:CompleteLifecycleAction"]
    resources = ["arn:${local.partition}:autoscaling:${var.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.asg_name}"]
  }
}

resource "aws_iam_role_policy" "relay" {
  name   = "relay"
  role   = aws_iam_role.relay.id
  policy = data.aws_iam_policy_document.relay.json
}

# Shell access through Session Manager instead of SSH.
resource "aws_iam_role_policy_attachment" "relay_ssm" {
  role       = aws_iam_role.relay.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "relay" {
  name = "${var.name}-relay"
  role = aws_iam_role.relay.name
}

resource "aws_launch_template" "relay" {
  name_prefix            = "${var.name}-relay-"
  image_id               = data.aws_ssm_parameter.al2023.value
  instance_type          = var.relay_instance_type
  vpc_security_group_ids = [aws_security_group.relay.id]
  user_data              = base64encode(local.relay_user_data)
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.relay.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  monitoring {
    enabled = true
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = 20
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-relay" }
  }
}

resource "aws_autoscaling_group" "relay" {
  name                      = local.asg_name
  vpc_zone_identifier       = var.relay_subnet_ids
  min_size                  = var.relay_min_size
  max_size                  = var.relay_max_size
  target_group_arns         = [aws_lb_target_group.relay.arn]
  health_check_type         = "ELB"
  health_check_grace_period = 120
  default_instance_warmup   = 60
  termination_policies      = ["OldestLaunchTemplate", "Default"]
  enabled_metrics           = ["GroupInServiceInstances", "GroupDesiredCapacity", "GroupTerminatingInstances"]

  launch_template {
    id      = aws_launch_template.relay.id
    version = aws_launch_template.relay.latest_version
  }

  # Scale-in and instance refresh wait for the relay to drain
  # (templates/scale-in-drain.sh completes the action).
  initial_lifecycle_hook {
    name                 = local.hook_name
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    heartbeat_timeout    = 120
    default_result       = "CONTINUE"
  }

  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 90
      instance_warmup        = 60
    }
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-relay"
    propagate_at_launch = true
  }

  lifecycle {
    ignore_changes = [desired_capacity]
  }
}

resource "aws_autoscaling_policy" "relay_cpu" {
  name                   = "${var.name}-relay-cpu"
  autoscaling_group_name = aws_autoscaling_group.relay.name
  policy_type            = "TargetTrackingScaling"
  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
    target_value = var.relay_target_cpu_percent
  }
}

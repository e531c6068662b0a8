# The relay fleet: an Auto Scaling group of Amazon Linux 2023 instances
# behind a network load balancer, with a UDP listener (each flow, agent
# address and port, sticks to one relay) or, with lb_mode = "quic", a QUIC
# listener (each packet goes to the relay whose server ID its connection ID
# carries). Relays share nothing.

locals {
  asg_name         = "${var.name}-relays"
  hook_name        = "drain-on-terminate"
  launch_hook_name = "register-quic-server-id"

  # lb_mode = "quic": a QUIC listener routes by the server ID in each
  # connection ID. The Auto Scaling group cannot register a target with a
  # server ID, so each instance registers itself at boot (a launch lifecycle
  # hook holds it out of service until then) and deregisters when it drains.
  quic = var.lb_mode == "quic"

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
    quic_lb             = local.quic ? "yes" : ""
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
    quic_lb                   = local.quic ? "yes" : ""
    launch_hook_name          = local.launch_hook_name
    target_group_arn          = aws_lb_target_group.relay.arn
    relay_port                = var.relay_port
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
  #checkov:skip=CKV_AWS_91:NLB access logs cover TLS listeners only; UDP and QUIC listeners have none to write.
  #checkov:skip=CKV2_AWS_28:WAF does not apply to network load balancers.
  # The name predates lb_mode; it stays so that an upgrade keeps the DNS name agents use.
  name                             = "${var.name}-udp"
  load_balancer_type               = "network"
  internal                         = var.lb_internal
  ip_address_type                  = var.lb_ip_address_type
  subnets                          = var.lb_subnet_ids
  enable_cross_zone_load_balancing = true
  # Turn off by hand before a terraform destroy.
  enable_deletion_protection = true
}

resource "aws_lb_target_group" "relay" {
  # A protocol change replaces the group; each mode keeps its own name so the
  # new group can exist before the old one goes (the UDP name predates lb_mode).
  name                 = local.quic ? "${var.name}-quic-lb" : "${var.name}-quic"
  vpc_id               = var.vpc_id
  protocol             = local.quic ? "QUIC" : "UDP"
  port                 = var.relay_port
  target_type          = "instance"
  deregistration_delay = local.relay_drain_secs + 10
  # Flows to a deregistered relay keep going until the relay itself closes
  # them (GoAway on drain), so agents finish in-flight batches first.
  connection_termination = false
  # target_health_state (ending the flows of an unhealthy target) is left at
  # AWS's default: agents do not depend on the load balancer to end a dead
  # relay's flows, they leave them (liveness timeout, fresh source port).

  # UDP and QUIC target groups get no passive checks: only these active ones
  # take a dead relay out of rotation for new flows. AWS's fastest: every
  # 5 s, out after 2 failures (10 to 15 s). Agents do not wait for it: they
  # leave a silent relay after their liveness timeout (3 s) and reconnect
  # from a fresh port, a new flow (terraform/README.md, "Failover").
  health_check {
    protocol            = "HTTP"
    port                = tostring(var.relay_metrics_port)
    path                = "/readyz"
    matcher             = "200"
    interval            = 5
    timeout             = 3
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "relay" {
  load_balancer_arn = aws_lb.relay.arn
  protocol          = local.quic ? "QUIC" : "UDP"
  port              = var.relay_port
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.relay.arn
  }

  lifecycle {
    # AWS refuses a QUIC listener on a dualstack load balancer, on one with
    # security groups, and beside UDP listeners (this one is the only listener).
    precondition {
      condition     = !local.quic || (var.lb_ip_address_type == "ipv4" && try(length(aws_lb.relay.security_groups), 0) == 0)
      error_message = "lb_mode = \"quic\" needs an IPv4 load balancer without security groups: set lb_ip_address_type = \"ipv4\"."
    }
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
  dynamic "statement" {
    for_each = local.quic ? [aws_lb_target_group.relay.arn] : []
    content {
      sid       = "RegisterWithQuicServerId"
      actions   = ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"]
      resources = [statement.value]
    }
  }
  statement {
    sid       = "CompleteLifecycleActions"
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
  # In QUIC mode instances register themselves with their server IDs, so
  # the group neither attaches them nor sees the load balancer's health
  # checks (it replaces instances that fail EC2 checks; the load balancer
  # still routes only to relays whose /readyz answers).
  target_group_arns         = local.quic ? [] : [aws_lb_target_group.relay.arn]
  health_check_type         = local.quic ? "EC2" : "ELB"
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
  # QUIC mode: boot registers the instance with its server ID, then
  # completes this action (templates/relay-user-data.sh.tftpl).
  dynamic "initial_lifecycle_hook" {
    for_each = local.quic ? [local.launch_hook_name] : []
    content {
      name                 = initial_lifecycle_hook.value
      lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"
      heartbeat_timeout    = 600
      default_result       = "ABANDON"
    }
  }

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

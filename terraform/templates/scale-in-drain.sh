#!/bin/bash
# Scale-in drain for a relay in an Auto Scaling group. Polls the instance's
# target lifecycle state; when the group terminates the instance (scale-in,
# instance refresh), stops the relay, which drains (fails /readyz, sends
# GoAway, acks and stores what it holds, exits), then lets the group go on.
# With a QUIC listener (QUIC_LB_SERVER_ID set) the instance registered
# itself with the target group, so it deregisters itself first: the load
# balancer stops sending new connections while open ones drain.
# Environment: REGION, ASG_NAME, HOOK_NAME, TARGET_GROUP_ARN, RELAY_PORT,
# QUIC_LB_SERVER_ID (set by its systemd unit from relay.env).
set -uo pipefail
imds() {
  local token
  token=$(curl -sS -X PUT http://169.254.169.254/latest/api/token \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') || return 1
  curl -sSf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}
instance_id=$(imds instance-id) || { echo "horizon-scale-in-drain: no instance metadata" >&2; exit 1; }
while true; do
  state=$(imds autoscaling/target-lifecycle-state 2>/dev/null || true)
  if [ "$state" = "Terminated" ]; then
    echo "horizon-scale-in-drain: instance is being terminated; draining the relay"
    if [ -n "${QUIC_LB_SERVER_ID:-}" ]; then
      aws elbv2 deregister-targets --region "$REGION" --target-group-arn "$TARGET_GROUP_ARN" \
        --targets "Id=$instance_id,Port=$RELAY_PORT,QuicServerId=$QUIC_LB_SERVER_ID" \
        || echo "horizon-scale-in-drain: deregistering failed; draining anyway" >&2
    fi
    systemctl stop telemetry-relay.service
    echo "horizon-scale-in-drain: relay stopped ($(systemctl show -p Result --value telemetry-relay.service)); completing the lifecycle action"
    aws autoscaling complete-lifecycle-action --region "$REGION" \
      --auto-scaling-group-name "$ASG_NAME" --lifecycle-hook-name "$HOOK_NAME" \
      --instance-id "$instance_id" --lifecycle-action-result CONTINUE
    exit 0
  fi
  sleep 5
done

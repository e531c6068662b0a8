use super::*;
use crate::spool::SyncPolicy;
use std::time::Duration;

fn load(yaml: &str) -> Result<Settings, ConfigError> {
    Config::from_yaml_with_env(yaml, "test.yaml", |v| {
        (v == "RELAY").then(|| "relay.example:5001".to_owned())
    })?
    .validate()
}

#[test]
fn defaults_are_valid_and_point_at_a_local_dev_relay() {
    let s = load("").unwrap();
    assert_eq!(s.relay.addr, "127.0.0.1:5001");
    assert_eq!(s.relay.server_name, "127.0.0.1");
    assert!(matches!(s.security.tls, TlsSource::Dev { .. }));
    assert!(s.targets.is_empty());
    assert_eq!(s.spool.options.max_bytes, 1024 << 20);
}

#[test]
fn a_full_file_with_variables_is_read() {
    let s = load(
        "relay:\n  addr: ${RELAY}\nscrape:\n  interval_secs: 10\n  targets:\n    - url: http://127.0.0.1:9400/metrics\n      name: dcgm\n      interval_secs: 1\n      labels: {cluster: a}\n      deny: [\"DCGM_FI_PROF_*\"]\n      drop_labels: [Hostname]\nspool:\n  sync: every_batch\n",
    )
    .unwrap();
    assert_eq!(s.relay.addr, "relay.example:5001");
    assert_eq!(s.relay.server_name, "relay.example");
    let t = &s.targets[0];
    assert_eq!(t.name, "dcgm");
    assert_eq!(t.interval, Duration::from_secs(1));
    assert_eq!(t.timeout, Duration::from_secs(1));
    assert_eq!(t.labels, vec![("cluster".into(), "a".into())]);
    assert_eq!(t.placeholder_min, Some(DEFAULT_PLACEHOLDER_MIN));
    assert_eq!(s.spool.options.sync, SyncPolicy::EveryBatch);
}

#[test]
fn errors_name_the_key() {
    let cases = [
        ("relay:\n  adr: x:1\n", "adr"),
        ("relay:\n  addr: nope\n", "relay.addr"),
        (
            "scrape:\n  targets:\n    - url: ftp://x/\n",
            "scrape.targets[0].url",
        ),
        (
            "scrape:\n  targets:\n    - url: http://x/\n      interval_secs: 1\n      timeout_secs: 2\n",
            "scrape.targets[0].timeout_secs",
        ),
        (
            "scrape:\n  targets:\n    - url: http://x/\n      labels: {node: a}\n",
            "scrape.targets[0].labels.node",
        ),
        ("spool:\n  sync: sometimes\n", "spool.sync"),
        (
            "spool:\n  max_mib: 1\n  segment_mib: 2\n",
            "spool.segment_mib",
        ),
        (
            "observability:\n  metrics_addr: localhost\n",
            "observability.metrics_addr",
        ),
        (
            "security:\n  tls_cert_path: a.pem\n",
            "security.tls_key_path",
        ),
        ("relay:\n  addr: ${UNSET_VAR}\n", "UNSET_VAR"),
    ];
    for (yaml, key) in cases {
        let e = load(yaml).unwrap_err().to_string();
        assert!(e.contains(key), "{yaml:?}: {e:?} does not name {key}");
    }
}

#[test]
fn the_example_file_is_valid_and_states_the_defaults() {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/agent.example.yaml"
    ));
    let from_file = load(text).unwrap();
    let defaults = load("").unwrap();
    assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    // The commented-out targets are valid too.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("  # - ") {
            Some(rest) => format!("    - {rest}\n"),
            None => match l.strip_prefix("  #   ") {
                Some(rest) => format!("      {rest}\n"),
                None => format!("{l}\n"),
            },
        })
        .collect::<String>()
        .replace("targets: []", "targets:");
    let s = load(&uncommented).unwrap();
    assert_eq!(s.targets.len(), 2);
    assert_eq!(s.targets[0].deny, vec!["DCGM_FI_PROF_*".to_owned()]);
}

#[test]
fn flags_override_the_file() {
    let mut c = Config::from_yaml("relay:\n  addr: a:1\n", "t").unwrap();
    c.apply(&Overrides {
        relay: Some("b:2".into()),
        scrape: vec!["http://127.0.0.1:9100/metrics".into()],
        interval_secs: Some(2.0),
        no_gpu: true,
        ..Overrides::default()
    });
    let s = c.validate().unwrap();
    assert_eq!(s.relay.addr, "b:2");
    assert_eq!(s.targets.len(), 1);
    assert_eq!(s.targets[0].interval, Duration::from_secs(2));
    assert!(!s.gpu.enabled);
}

#[test]
fn failover_timeouts_are_read_and_checked() {
    let s = load("").unwrap();
    assert_eq!(
        (s.relay.liveness_timeout, s.relay.ack_timeout),
        (Duration::from_secs(3), Duration::from_secs(30))
    );
    let s = load("relay:\n  liveness_timeout_secs: 2\n  ack_timeout_secs: 10\n").unwrap();
    assert_eq!(
        (s.relay.liveness_timeout, s.relay.ack_timeout),
        (Duration::from_secs(2), Duration::from_secs(10))
    );
    for (yaml, key) in [
        (
            "relay:\n  liveness_timeout_secs: 0\n",
            "relay.liveness_timeout_secs",
        ),
        (
            "relay:\n  liveness_timeout_secs: 61\n",
            "relay.liveness_timeout_secs",
        ),
        ("relay:\n  ack_timeout_secs: 3\n", "relay.ack_timeout_secs"),
    ] {
        let e = load(yaml).unwrap_err().to_string();
        assert!(e.contains(key), "{yaml:?}: {e}");
    }
}

#[test]
fn a_flag_that_lowers_another_setting_is_noted_with_both() {
    let with = |interval| {
        let mut c = Config::from_yaml("scrape:\n  targets:\n    - url: http://x/\n", "t").unwrap();
        c.apply(&Overrides {
            interval_secs: Some(interval),
            ..Overrides::default()
        });
        c.validate().unwrap()
    };
    let s = with(1.0);
    assert_eq!(s.targets[0].timeout, Duration::from_secs(1));
    assert_eq!(s.lowered.len(), 1, "{:?}", s.lowered);
    let note = s.lowered[0].to_string();
    for part in ["scrape.timeout_secs", "from 5 s", "to 1 s", "--interval 1"] {
        assert!(note.contains(part), "{note:?} lacks {part:?}");
    }
    // An interval above the timeout lowers nothing.
    assert!(with(10.0).lowered.is_empty());
}

#[test]
fn a_target_interval_below_the_default_timeout_is_noted() {
    let s = load(
        "scrape:\n  timeout_secs: 4\n  targets:\n    - {url: http://x/, interval_secs: 0.5}\n    - {url: http://y/, interval_secs: 0.5, timeout_secs: 0.25}\n    - {url: http://z/}\n",
    )
    .unwrap();
    assert_eq!(s.targets[0].timeout, Duration::from_millis(500));
    assert_eq!(
        s.lowered,
        vec![Lowered {
            setting: "scrape.targets[0].timeout_secs".into(),
            from: "4 s (scrape.timeout_secs)".into(),
            to: "0.5 s".into(),
            by: "scrape.targets[0].interval_secs = 0.5 s (a scrape's timeout is at most its interval)"
                .into(),
        }],
        "only the target whose timeout was lowered without being written"
    );
}

#[test]
fn the_gpu_pid_label_is_off_unless_asked_for() {
    assert!(!load("").unwrap().gpu.process_pid_label);
    assert!(
        load("gpu:\n  process_pid_label: true\n")
            .unwrap()
            .gpu
            .process_pid_label
    );
    let e = load("gpu:\n  process_pid_label: maybe\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("process_pid_label"), "{e}");
}

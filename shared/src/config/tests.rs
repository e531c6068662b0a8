use std::time::Duration;

use super::check::{above, at_most, between, not_below, one_of, positive, seconds};
use super::host::{host_name, host_name_from, host_port, plain_name};
use super::*;

fn key_and_message(e: ConfigError) -> (String, String) {
    match e {
        ConfigError::Invalid { key, message } => (key, message),
        other => panic!("expected an invalid-value error, got {other:?}"),
    }
}

#[test]
fn ranges_and_relations_name_the_key_and_the_values() {
    assert_eq!(positive("a.b", 3_usize).unwrap(), 3);
    let (key, msg) = key_and_message(positive("a.b", 0_u64).unwrap_err());
    assert_eq!(
        (key.as_str(), msg.as_str()),
        ("a.b", "must be at least 1 (got 0)")
    );
    assert_eq!(between("k", 5, 1, 5).unwrap(), 5);
    let (_, msg) = key_and_message(between("k", 0, 1, 5).unwrap_err().because("why"));
    assert_eq!(msg, "0 must be between 1 and 5 (why)");
    assert!(at_most("k", 11, 10).is_err());
    let (key, msg) = key_and_message(not_below("x", 1, "y", 2).unwrap_err());
    assert_eq!(
        (key.as_str(), msg.as_str()),
        ("x", "1 must be at least y (2)")
    );
    assert!(not_below("x", 2, "y", 2).is_ok());
    assert!(above("x", 2, "y", 2).is_err());
    assert!(above("x", 3, "y", 2).is_ok());
}

#[test]
fn seconds_are_positive_finite_and_at_most_a_day() {
    assert_eq!(seconds("k", 0.5).unwrap(), Duration::from_millis(500));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 86_401.0] {
        assert!(seconds("k", bad).is_err(), "{bad}");
    }
}

#[test]
fn words_map_to_their_values() {
    let opts = [("snappy", false), ("zstd", true)];
    assert!(one_of("c", "zstd", &opts).unwrap());
    let (_, msg) = key_and_message(one_of("c", "lz4", &opts).unwrap_err());
    assert_eq!(msg, r#""lz4" must be "snappy" or "zstd""#);
}

#[test]
fn host_names_keep_only_host_name_characters() {
    assert_eq!(
        host_name_from("gpu-node-7.example\n", "x"),
        "gpu-node-7.example"
    );
    assert_eq!(host_name_from(" a_b c\n", "x"), "abc");
    assert_eq!(host_name_from("\n", "relay"), "relay");
    assert!(!host_name("fallback").is_empty());
    assert!(plain_name("k", "relay-1_a.b").is_ok());
    assert!(plain_name("k", "relay 1").is_err());
}

#[test]
fn host_port_splits_and_refuses() {
    assert_eq!(
        host_port("k", "relay.example:5001").unwrap(),
        ("relay.example", 5001)
    );
    assert_eq!(host_port("k", "[::1]:5001").unwrap(), ("[::1]", 5001));
    for bad in ["nope", ":5001", "h:", "h:70000"] {
        assert!(host_port("k", bad).is_err(), "{bad}");
    }
}

#[test]
fn tls_paths_all_or_none() {
    let dev = TlsPaths {
        cert: "",
        key: "",
        ca: "",
        dev_certs_dir: ".dev/certs",
    };
    assert_eq!(
        dev.source("security").unwrap(),
        TlsSource::Dev(".dev/certs".into())
    );
    let (key, _) = key_and_message(
        TlsPaths {
            dev_certs_dir: "",
            ..dev
        }
        .source("security")
        .unwrap_err(),
    );
    assert_eq!(key, "security.dev_certs_dir");
    let (key, msg) = key_and_message(
        TlsPaths {
            cert: "a.pem",
            ..dev
        }
        .source("security")
        .unwrap_err(),
    );
    assert_eq!(key, "security");
    assert!(msg.starts_with("security.tls_key_path is empty"), "{msg}");
    let all = TlsPaths {
        cert: "c",
        key: "k",
        ca: "a",
        dev_certs_dir: "",
    };
    assert!(matches!(
        all.source("security"),
        Ok(TlsSource::Files { .. })
    ));
}

#[test]
fn empty_text_gives_the_default_and_variables_expand() {
    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct T {
        a: String,
    }
    let t: T = load_yaml("", "t", |_| None).unwrap();
    assert_eq!(t.a, "");
    let t: T = load_yaml("a: ${X}\n", "t", |_| Some("v".into())).unwrap();
    assert_eq!(t.a, "v");
    assert!(matches!(
        load_yaml::<T>("b: 1\n", "t", |_| None),
        Err(ConfigError::Parse { .. })
    ));
}

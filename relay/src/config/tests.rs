use super::*;
use std::path::PathBuf;
use std::time::Duration;

fn env(name: &str) -> Option<String> {
    (name == "INFLUXDB_TOKEN").then(|| "tok-123".to_owned())
}

fn parse(yaml: &str) -> Result<Settings, ConfigError> {
    Config::from_yaml_with_env(yaml, "test.yaml", env)?.validate()
}

fn invalid_key(yaml: &str) -> String {
    match parse(yaml) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected an invalid-value error, got {other:?}"),
    }
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let s = parse("").unwrap();
    assert_eq!(s.server.listen_addr, "0.0.0.0:5001".parse().unwrap());
    assert_eq!(
        s.observability.metrics_addr,
        Some("0.0.0.0:9091".parse().unwrap())
    );
    assert_eq!(s.server.max_connections, 1000);
    assert_eq!(s.server.max_connections_per_node, 4);
    assert_eq!(s.server.idle_timeout, Duration::from_secs(300));
    assert!(s.server.keep_alive < Duration::from_secs(120));
    assert_eq!(s.limits.max_batch_size, 1000);
    assert_eq!(s.budgets.max_series_total, 100_000);
    assert_eq!(s.budgets.max_series_per_node, 10_000);
    assert_eq!(s.security.tls, TlsSource::Dev(PathBuf::from(".dev/certs")));
    assert_eq!(s.server.drain_grace, Duration::from_secs(5));
    assert_eq!(s.server.drain_flush, Duration::from_secs(10));
    assert_eq!(s.server.max_in_flight_per_connection, 1024);
    let s = parse("server:\n  drain_grace_secs: 20\n  drain_flush_secs: 2\n").unwrap();
    assert_eq!(
        (s.server.drain_grace, s.server.drain_flush),
        (Duration::from_secs(20), Duration::from_secs(2))
    );
}

#[test]
fn example_config_is_valid() {
    let text = include_str!("../../../infra/config.example.yaml");
    let cfg = Config::from_yaml_with_env(text, "config.example.yaml", env).unwrap();
    assert_eq!(cfg.influxdb.token, "tok-123");
    cfg.validate().unwrap();
}

#[test]
fn env_expansion_and_missing_variable() {
    let cfg = Config::from_yaml_with_env("influxdb:\n  token: \"${INFLUXDB_TOKEN}\"\n", "t", env)
        .unwrap();
    assert_eq!(cfg.influxdb.token, "tok-123");
    let err =
        Config::from_yaml_with_env("influxdb:\n  token: \"${S3_SECRET}\"\n", "t", env).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Env { .. }), "{msg}");
    assert!(msg.contains("S3_SECRET") && msg.contains("line 2"), "{msg}");
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let err =
        Config::from_yaml_with_env("server:\n  listen_adr: \"0.0.0.0:1\"\n", "t", env).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(err.to_string().contains("listen_adr"), "{err}");
    assert!(Config::from_yaml_with_env("bogus: 1\n", "t", env).is_err());
}

#[test]
fn wrong_types_are_refused() {
    let err =
        Config::from_yaml_with_env("server:\n  max_connections: lots\n", "t", env).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
}

#[test]
fn invalid_values_name_the_key() {
    assert_eq!(
        invalid_key("server:\n  listen_addr: nowhere\n"),
        "server.listen_addr"
    );
    assert_eq!(
        invalid_key("server:\n  max_connections: 0\n"),
        "server.max_connections"
    );
    assert_eq!(
        invalid_key("server:\n  max_connections_per_node: 0\n"),
        "server.max_connections_per_node"
    );
    assert_eq!(
        invalid_key("server:\n  max_connections_per_node: 1025\n"),
        "server.max_connections_per_node"
    );
    assert_eq!(
        invalid_key("server:\n  keep_alive_secs: 120\n"),
        "server.keep_alive_secs"
    );
    assert_eq!(
        invalid_key("server:\n  connection_timeout_secs: 10\n"),
        "server.connection_timeout_secs"
    );
    assert_eq!(
        invalid_key("security:\n  tls_cert_path: /a.pem\n"),
        "security"
    );
    assert_eq!(
        invalid_key("parquet:\n  compression: lz4\n"),
        "parquet.compression"
    );
    assert_eq!(
        invalid_key("limits:\n  max_batch_size: 0\n"),
        "limits.max_batch_size"
    );
    assert_eq!(
        invalid_key("limits:\n  max_frame_bytes: 10\n"),
        "limits.max_frame_bytes"
    );
    assert_eq!(invalid_key("ack:\n  mode: sometimes\n"), "ack.mode");
    assert_eq!(
        invalid_key("observability:\n  log_format: xml\n"),
        "observability.log_format"
    );
    assert_eq!(
        invalid_key("influxdb:\n  url: localhost:8086\n"),
        "influxdb.url"
    );
    assert_eq!(
        invalid_key("budgets:\n  node_overrides:\n    big-node:\n      max_series: 0\n"),
        "budgets.node_overrides.big-node.max_series"
    );
}

#[test]
fn invalid_value_message_carries_the_value() {
    let err = parse("parquet:\n  compression: lz4\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("parquet.compression") && err.contains("lz4"),
        "{err}"
    );
}

#[test]
fn overrides_and_files() {
    let s = parse(
        "security:\n  tls_cert_path: /c.pem\n  tls_key_path: /k.pem\n  tls_ca_path: /ca.pem\n\
         budgets:\n  max_series_per_metric: 50\n  node_overrides:\n    big:\n      max_series: 50000\n\
         observability:\n  metrics_port: 0\n",
    )
    .unwrap();
    assert!(matches!(s.security.tls, TlsSource::Files { .. }));
    assert_eq!(s.budgets.max_series_per_metric, Some(50));
    assert_eq!(s.budgets.overrides["big"].max_series, Some(50_000));
    assert_eq!(s.observability.metrics_addr, None);
}

#[test]
fn production_config_is_valid() {
    let text = include_str!("../../../infra/config.production.yaml");
    let s = Config::from_yaml_with_env(text, "config.production.yaml", env)
        .unwrap()
        .validate()
        .unwrap();
    assert!(matches!(s.security.tls, TlsSource::Files { .. }));
    assert!(matches!(s.parquet.location, StoreLocation::S3 { .. }));
    assert!(s.durable_acks && s.observability.log_json);
    assert!(
        matches!(s.influxdb.map(|i| i.api), Some(InfluxApi::V2 { token, .. }) if token == "tok-123")
    );
}

#[test]
fn in_flight_limit_is_read_and_bounded() {
    let s = parse("server:\n  max_in_flight_batches_per_connection: 8\n").unwrap();
    assert_eq!(s.server.max_in_flight_per_connection, 8);
    for bad in ["0", "65537"] {
        assert_eq!(
            invalid_key(&format!(
                "server:\n  max_in_flight_batches_per_connection: {bad}\n"
            )),
            "server.max_in_flight_batches_per_connection"
        );
    }
}

#[test]
fn object_store_section_reads_the_s3_keys_and_refuses_unknown_ones() {
    let s = parse(
        "object_store:\n  url: s3://bucket/fleet\n  raw_prefix: r\n  region: eu-west-1\n  endpoint: http://127.0.0.1:9000\n  path_style: true\n  allow_http: true\n  access_key_id: \"id\"\n  secret_access_key: \"secret\"\n",
    )
    .unwrap();
    assert_eq!(s.parquet.raw_prefix, "r");
    match &s.parquet.location {
        StoreLocation::S3 {
            bucket,
            prefix,
            region,
            endpoint,
            path_style,
            allow_http,
            credentials,
        } => {
            assert_eq!((bucket.as_str(), prefix.as_str()), ("bucket", "fleet"));
            assert_eq!(credentials, &Some(("id".to_owned(), "secret".to_owned())));
            assert_eq!(region.as_deref(), Some("eu-west-1"));
            assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:9000"));
            assert!(*path_style && *allow_http);
        }
        other => panic!("expected S3, got {other:?}"),
    }
    // Keys of the section that are not set keep their defaults.
    let s = parse("object_store:\n  url: s3://bucket\n").unwrap();
    assert!(matches!(
        s.parquet.location,
        StoreLocation::S3 { ref region, path_style: false, allow_http: false, .. } if region.is_none()
    ));
    // A misspelt S3 key is refused with its name, like any other key.
    let err =
        Config::from_yaml_with_env("object_store:\n  regoin: eu-west-1\n", "t", env).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("regoin"), "{err}");
    // Wrong types too.
    let err =
        Config::from_yaml_with_env("object_store:\n  path_style: maybe\n", "t", env).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    // Only when the URL is S3 does a bad S3 key matter; then it is named.
    assert_eq!(
        invalid_key("object_store:\n  url: s3://b\n  access_key_id: only-id\n"),
        "object_store.secret_access_key"
    );
}

#[test]
fn quic_lb_server_id_is_checked_and_off_by_default() {
    assert_eq!(parse("").unwrap().server.quic_lb, None);
    let s = parse("server:\n  quic_lb_server_id: \"0x0a11223344556601\"\n").unwrap();
    let (id, len) = s.server.quic_lb.unwrap();
    assert_eq!(id.to_string(), "0x0a11223344556601");
    assert_eq!(len, 16);
    let s = parse("server:\n  quic_lb_server_id: \"0x0a11223344556601\"\n  quic_lb_cid_len: 20\n")
        .unwrap();
    assert_eq!(s.server.quic_lb.unwrap().1, 20);
    assert_eq!(
        invalid_key("server:\n  quic_lb_server_id: \"0a11223344556601\"\n"),
        "server.quic_lb_server_id"
    );
    let err = parse("server:\n  quic_lb_server_id: \"0x0a112233\"\n").unwrap_err();
    assert!(err.to_string().contains("16 hex digits"), "{err}");
    for len in [12, 21] {
        assert_eq!(
            invalid_key(&format!(
                "server:\n  quic_lb_server_id: \"0x0a11223344556601\"\n  quic_lb_cid_len: {len}\n"
            )),
            "server.quic_lb_cid_len"
        );
    }
}

#[test]
fn handshake_bound_and_timeout_are_read_and_checked() {
    let s = parse("").unwrap();
    assert_eq!(s.server.max_handshakes_in_progress, 128);
    assert_eq!(s.server.handshake_timeout, Duration::from_secs(5));
    let s =
        parse("server:\n  max_handshakes_in_progress: 8\n  handshake_timeout_secs: 2\n").unwrap();
    assert_eq!(
        (
            s.server.max_handshakes_in_progress,
            s.server.handshake_timeout
        ),
        (8, Duration::from_secs(2))
    );
    for bad in ["0", "65537"] {
        assert_eq!(
            invalid_key(&format!("server:\n  max_handshakes_in_progress: {bad}\n")),
            "server.max_handshakes_in_progress"
        );
    }
    for bad in ["0", "61"] {
        assert_eq!(
            invalid_key(&format!("server:\n  handshake_timeout_secs: {bad}\n")),
            "server.handshake_timeout_secs"
        );
    }
}

#[test]
fn dictionary_bounds_are_read_and_ordered() {
    let s = parse("").unwrap();
    assert_eq!(
        s.limits.dictionary,
        DictionaryLimits {
            per_stream: 16 << 20,
            per_connection: 32 << 20,
            total: 1 << 30,
        }
    );
    let s = parse(
        "limits:\n  max_dictionary_bytes_per_stream: 1000\n  max_dictionary_bytes_per_connection: 2000\n  max_dictionary_bytes_total: 3000\n",
    )
    .unwrap();
    assert_eq!(
        (
            s.limits.dictionary.per_stream,
            s.limits.dictionary.per_connection,
            s.limits.dictionary.total
        ),
        (1000, 2000, 3000)
    );
    assert_eq!(
        invalid_key("limits:\n  max_dictionary_bytes_per_stream: 0\n"),
        "limits.max_dictionary_bytes_per_stream"
    );
    assert_eq!(
        invalid_key("limits:\n  max_dictionary_bytes_per_connection: 1000\n"),
        "limits.max_dictionary_bytes_per_connection"
    );
    assert_eq!(
        invalid_key("limits:\n  max_dictionary_bytes_total: 1000\n"),
        "limits.max_dictionary_bytes_total"
    );
}

#[test]
fn frame_buffer_bounds_and_receive_window_are_read_and_checked() {
    let s = parse("").unwrap();
    assert_eq!(
        s.limits.frame_buffer,
        FrameBufferLimits {
            per_connection: 16 << 20,
            per_node: 64 << 20,
            total: 256 << 20,
        }
    );
    assert_eq!(s.server.receive_window, 1 << 20);
    let s = parse(
        "server:\n  receive_window_bytes: 524288\nlimits:\n  max_frame_bytes: 65536\n  max_frame_buffer_bytes_per_connection: 65536\n  max_frame_buffer_bytes_total: 131072\n",
    )
    .unwrap();
    assert_eq!(
        (
            s.limits.frame_buffer.per_connection,
            s.limits.frame_buffer.per_node,
            s.limits.frame_buffer.total,
            s.server.receive_window
        ),
        (65_536, 65_536, 131_072, 512 << 10),
        "a node's share defaults to a quarter of the total, at least a connection's"
    );
    let s = parse(
        "limits:\n  max_frame_buffer_bytes_per_connection: 8388608\n  max_frame_buffer_bytes_per_node: 33554432\n",
    )
    .unwrap();
    assert_eq!(
        (
            s.limits.frame_buffer.per_connection,
            s.limits.frame_buffer.per_node
        ),
        (8 << 20, 32 << 20)
    );
    // A node's share lies between a connection's and the relay's.
    for bad in [8 << 20, 512 << 20] {
        let key = invalid_key(&format!(
            "limits:\n  max_frame_buffer_bytes_per_node: {bad}\n"
        ));
        assert!(
            key == "limits.max_frame_buffer_bytes_per_node"
                || key == "limits.max_frame_buffer_bytes_total",
            "{bad}: {key}"
        );
    }
    // A connection must be able to read one frame of the largest size.
    assert_eq!(
        invalid_key("limits:\n  max_frame_buffer_bytes_per_connection: 1048576\n"),
        "limits.max_frame_buffer_bytes_per_connection"
    );
    assert_eq!(
        invalid_key("limits:\n  max_frame_buffer_bytes_total: 8388608\n"),
        "limits.max_frame_buffer_bytes_total"
    );
    assert_eq!(
        invalid_key(
            "limits:\n  max_frame_buffer_bytes_per_connection: 4294967296\n  max_frame_buffer_bytes_total: 4294967296\n"
        ),
        "limits.max_frame_buffer_bytes_total"
    );
    for bad in [0, 1000, 1 << 30] {
        assert_eq!(
            invalid_key(&format!("server:\n  receive_window_bytes: {bad}\n")),
            "server.receive_window_bytes"
        );
    }
}

#[test]
fn frame_rate_is_read_and_checked() {
    assert_eq!(
        parse("").unwrap().limits.frame_rate,
        FrameRate {
            min_bytes_per_sec: 16 << 10,
            window: std::time::Duration::from_secs(5),
        }
    );
    assert_eq!(
        parse("limits:\n  frame_read_timeout_secs: 2\n  min_frame_bytes_per_sec: 1000\n")
            .unwrap()
            .limits
            .frame_rate,
        FrameRate {
            min_bytes_per_sec: 1000,
            window: std::time::Duration::from_secs(2),
        }
    );
    for bad in [0, 301] {
        assert_eq!(
            invalid_key(&format!("limits:\n  frame_read_timeout_secs: {bad}\n")),
            "limits.frame_read_timeout_secs"
        );
    }
    for bad in [0u64, 2 << 30] {
        assert_eq!(
            invalid_key(&format!("limits:\n  min_frame_bytes_per_sec: {bad}\n")),
            "limits.min_frame_bytes_per_sec"
        );
    }
}

#[test]
fn influx_request_sizes_and_concurrency_are_read_and_checked() {
    let base = "influxdb:\n  url: http://localhost:8086\n  api: v1\n  database: t\n";
    let i = parse(base).unwrap().influxdb.unwrap();
    assert_eq!(
        (
            i.batch_points,
            i.batch_bytes,
            i.max_concurrent_writes,
            i.gzip
        ),
        (5000, 1 << 20, 4, true)
    );
    let i = parse(&format!(
        "{base}  batch_bytes: 65536\n  max_concurrent_writes: 16\n  gzip: false\n"
    ))
    .unwrap()
    .influxdb
    .unwrap();
    assert_eq!(
        (i.batch_bytes, i.max_concurrent_writes, i.gzip),
        (65_536, 16, false)
    );
    for (extra, key) in [
        ("  batch_bytes: 100\n", "influxdb.batch_bytes"),
        (
            "  max_concurrent_writes: 0\n",
            "influxdb.max_concurrent_writes",
        ),
        (
            "  max_concurrent_writes: 65\n",
            "influxdb.max_concurrent_writes",
        ),
    ] {
        assert_eq!(invalid_key(&format!("{base}{extra}")), key);
    }
}

#[test]
fn crl_paths_are_one_path_or_a_list() {
    assert_eq!(parse("").unwrap().security.crl, CrlSettings::default());
    let one = parse("security:\n  tls_crl_path: /etc/horizon/nodes.crl\n").unwrap();
    assert_eq!(
        one.security.crl.paths,
        [PathBuf::from("/etc/horizon/nodes.crl")]
    );
    assert!(!one.security.crl.enforce_next_update);
    let many = parse(
        "security:\n  tls_crl_path: [a.crl, b.crl.pem]\n  tls_crl_enforce_next_update: true\n",
    )
    .unwrap();
    assert_eq!(
        many.security.crl.paths,
        [PathBuf::from("a.crl"), PathBuf::from("b.crl.pem")]
    );
    assert!(many.security.crl.enforce_next_update);
}

/// `section.key` = `value` rows of README's table of main settings.
fn readme_defaults() -> Vec<(String, String)> {
    let readme = include_str!("../../../docs/relay.md");
    let table = readme
        .split("| key | default | what it sets |")
        .nth(1)
        .expect("README has the table of main settings");
    let cells = |cell: &str| -> Vec<String> {
        cell.split(", ")
            .map(|c| c.trim().trim_matches('`').to_owned())
            .collect()
    };
    let mut rows = Vec::new();
    for line in table.lines().skip(2) {
        if !line.starts_with("| `") {
            break;
        }
        let fields: Vec<&str> = line.split(" | ").collect();
        let (keys, values) = (cells(fields[0].trim_start_matches("| ")), cells(fields[1]));
        assert_eq!(keys.len(), values.len(), "README row {line}");
        rows.extend(keys.into_iter().zip(values));
    }
    rows
}

#[test]
fn readme_table_of_defaults_matches_the_code() {
    let defaults = format!(
        "{:?}",
        Config::from_yaml_with_env("", "empty", |_| None).unwrap()
    );
    let rows = readme_defaults();
    assert!(
        rows.len() >= 30,
        "only {} rows read from README",
        rows.len()
    );
    for (key, value) in rows {
        let (section, name) = key.split_once('.').expect("section.key");
        let yaml = format!("{section}:\n  {name}: {value}\n");
        let set = Config::from_yaml_with_env(&yaml, "README.md", |_| None)
            .unwrap_or_else(|e| panic!("README's {key}: {value} does not parse: {e}"));
        assert_eq!(
            format!("{set:?}"),
            defaults,
            "README says {key} defaults to {value}; the code's default differs"
        );
    }
}

#[test]
fn example_config_states_the_defaults() {
    let defaults = format!(
        "{:?}",
        Config::from_yaml_with_env("", "empty", |_| None).unwrap()
    );
    let text = include_str!("../../../infra/config.example.yaml");
    let example = Config::from_yaml_with_env(text, "config.example.yaml", |_| None).unwrap();
    assert_eq!(format!("{example:?}"), defaults);
}

#[test]
fn udp_receive_buffer_is_read_and_checked() {
    assert_eq!(parse("").unwrap().server.udp_receive_buffer, 8 << 20);
    let s = parse("server:\n  udp_receive_buffer_bytes: 0\n").unwrap();
    assert_eq!(s.server.udp_receive_buffer, 0, "0: the kernel's default");
    for bad in ["1024", "2147483648"] {
        assert_eq!(
            invalid_key(&format!("server:\n  udp_receive_buffer_bytes: {bad}\n")),
            "server.udp_receive_buffer_bytes"
        );
    }
}

use std::time::Duration;

use super::*;

#[test]
fn relay_deadlines_add_up_to_grace_plus_flush_plus_three_seconds() {
    let mut settings = crate::config::Config::default()
        .validate()
        .expect("default configuration is valid");
    settings.server.drain_grace = Duration::from_secs(5);
    settings.server.drain_flush = Duration::from_secs(10);
    let d = Deadlines::from_settings(&settings);
    assert_eq!(d.connections, Duration::from_secs(6));
    assert_eq!(d.sinks, Duration::from_secs(10));
    assert_eq!(d.total(), Duration::from_secs(18));
}

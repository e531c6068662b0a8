//! The YAML configuration loaders of the relay and the agent, `${VAR}`
//! expansion included, then their validation: never a panic, whatever the
//! file and whatever the variables hold.
//!
//! Input: variable value, a NUL byte, configuration text. Every variable
//! whose name starts with `U` is unset; every other holds the value, so the
//! fuzzer can inject YAML through a variable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (value, text) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let (Ok(value), Ok(text)) = (std::str::from_utf8(value), std::str::from_utf8(text)) else {
        return;
    };
    let env = |name: &str| (!name.starts_with('U')).then(|| value.to_owned());
    if let Ok(c) = horizon_relay::config::Config::from_yaml_with_env(text, "fuzz.yaml", env) {
        let _ = c.validate();
    }
    if let Ok(c) = horizon_agent::config::Config::from_yaml_with_env(text, "fuzz.yaml", env) {
        let _ = c.validate();
    }
});

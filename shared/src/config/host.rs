//! Host names: this machine's, as a default name, and the host of a
//! `HOST:PORT` address.

use super::error::{ConfigError, invalid};

/// Where the machine's host name is read, in order.
const HOST_NAME_FILES: [&str; 2] = ["/proc/sys/kernel/hostname", "/etc/hostname"];

/// This machine's host name, for a default relay or node name: the first of
/// `/proc/sys/kernel/hostname` and `/etc/hostname` that gives a name under
/// [`host_name_from`]'s rule, else `fallback`.
pub fn host_name(fallback: &str) -> String {
    HOST_NAME_FILES
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|text| host_name_from(&text, ""))
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| fallback.to_owned())
}

/// The host name in `text` (a host-name file's content): trimmed, with only
/// the characters a host name may hold (ASCII letters, digits, `-` and `.`)
/// kept; `fallback` when nothing is left.
pub fn host_name_from(text: &str, fallback: &str) -> String {
    let name: String = text
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    if name.is_empty() {
        fallback.to_owned()
    } else {
        name
    }
}

/// The host and port of a `HOST:PORT` address (an IPv6 host in brackets,
/// `[::1]:5001`, keeps them).
pub fn host_port<'a>(key: &str, addr: &'a str) -> Result<(&'a str, u16), ConfigError> {
    let bad = || invalid(key, format!("{addr:?} is not HOST:PORT"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// `name` holds only ASCII letters, digits, `-`, `_` and `.` (a name used
/// in logs and object keys).
pub fn plain_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{name:?} may only hold letters, digits, '-', '_' and '.'"),
        ))
    }
}

//! `${VAR}` expansion for configuration text.
//!
//! - `${NAME}` is replaced by the variable's value; a variable that is not
//!   set is an error naming it and the line.
//! - `${NAME:-default}` uses `default` when the variable is unset or empty.
//! - `$${` is a literal `${`.
//! - Lines whose first non-blank character is `#` are comments and are left
//!   as they are, so a commented-out `${VAR}` needs no variable.
//!
//! Expansion happens on the text before YAML parsing, so a value containing
//! YAML syntax should be quoted in the file (`token: "${INFLUXDB_TOKEN}"`).

/// A reference to an unset variable, or an unterminated `${`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// The variable is not set and has no default.
    #[error("line {line}: environment variable {name} is not set (referenced as ${{{name}}})")]
    Missing {
        /// The variable.
        name: String,
        /// 1-based line number.
        line: usize,
    },
    /// `${` without a closing `}` or with an invalid name.
    #[error("line {line}: malformed variable reference {text:?}")]
    Malformed {
        /// The reference as written (cut to 40 characters).
        text: String,
        /// 1-based line number.
        line: usize,
    },
}

/// Expands `text`, looking variables up with `lookup` (the relay passes the
/// process environment; tests pass their own).
pub fn expand_with(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, EnvError> {
    let mut out = String::with_capacity(text.len());
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        expand_line(line, idx + 1, &lookup, &mut out)?;
    }
    Ok(out)
}

fn expand_line(
    line: &str,
    lineno: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), EnvError> {
    let mut rest = line;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body_start) = after.strip_prefix("${") {
            let malformed = || EnvError::Malformed {
                text: after.chars().take(40).collect(),
                line: lineno,
            };
            let end = body_start.find('}').ok_or_else(malformed)?;
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(malformed());
            }
            match (lookup(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(EnvError::Missing {
                        name: name.to_owned(),
                        line: lineno,
                    });
                }
            }
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_defaults_and_escapes() {
        let got = expand_with(
            "a: ${TOKEN}\nb: ${NOPE:-x}\nc: ${EMPTY:-d}\nd: $${TOKEN}\ne: $5\n",
            env,
        )
        .unwrap();
        assert_eq!(got, "a: s3cr3t\nb: x\nc: d\nd: ${TOKEN}\ne: $5\n");
    }

    #[test]
    fn missing_variable_names_it_and_the_line() {
        let err = expand_with("x: 1\ntoken: \"${INFLUXDB_TOKEN}\"\n", env).unwrap_err();
        assert_eq!(
            err,
            EnvError::Missing {
                name: "INFLUXDB_TOKEN".into(),
                line: 2
            }
        );
        assert!(err.to_string().contains("INFLUXDB_TOKEN"));
    }

    #[test]
    fn comments_are_left_alone() {
        assert_eq!(
            expand_with("  # ${UNSET}\n", env).unwrap(),
            "  # ${UNSET}\n"
        );
    }

    #[test]
    fn malformed_references() {
        assert!(matches!(
            expand_with("a: ${TOKEN\n", env),
            Err(EnvError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            expand_with("a: ${1X}\n", env),
            Err(EnvError::Malformed { .. })
        ));
    }
}

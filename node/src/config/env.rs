//! `${VAR}` substitution in config values, so secrets stay out of the file.
//! `${VAR:-default}` takes `default` when `VAR` is unset or empty, so an
//! example config can start with nothing set.

/// Replaces every `${NAME}` or `${NAME:-default}` in `value`. Fails on the
/// first variable that is unset and has no default, or on an unterminated `${`.
pub fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("unterminated `${` (write `${NAME}`)".to_owned());
        };
        let (name, default) = match after[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&after[..end], None),
        };
        match (
            lookup(name).filter(|found| !found.is_empty() || default.is_none()),
            default,
        ) {
            (Some(found), _) => out.push_str(&found),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(format!("environment variable `{name}` is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_and_reports_missing_variables() {
        assert_eq!(expand("a-${SET}-b", &lookup).unwrap(), "a-value-b");
        assert_eq!(expand("plain", &lookup).unwrap(), "plain");
        assert_eq!(expand("${EMPTY}", &lookup).unwrap(), "");
        assert!(expand("${UNSET}", &lookup).unwrap_err().contains("`UNSET`"));
        assert!(expand("${SET", &lookup).is_err());
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        assert_eq!(expand("${UNSET:-dev}", &lookup).unwrap(), "dev");
        assert_eq!(expand("${EMPTY:-dev}", &lookup).unwrap(), "dev");
        assert_eq!(expand("${SET:-dev}", &lookup).unwrap(), "value");
        assert_eq!(expand("${UNSET:-}", &lookup).unwrap(), "");
    }
}

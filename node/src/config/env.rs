//! `${VAR}` substitution in config values, so secrets stay out of the file.

/// Replaces every `${NAME}` in `value` with the variable's value. Fails with
/// the first variable that is unset, or on an unterminated `${`.
pub fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("unterminated `${` (write `${NAME}`)".to_owned());
        };
        let name = &after[..end];
        match lookup(name) {
            Some(found) => out.push_str(&found),
            None => return Err(format!("environment variable `{name}` is not set")),
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
        (name == "SET").then(|| "value".to_owned())
    }

    #[test]
    fn expands_and_reports_missing_variables() {
        assert_eq!(expand("a-${SET}-b", &lookup).unwrap(), "a-value-b");
        assert_eq!(expand("plain", &lookup).unwrap(), "plain");
        assert!(expand("${UNSET}", &lookup).unwrap_err().contains("`UNSET`"));
        assert!(expand("${SET", &lookup).is_err());
    }
}

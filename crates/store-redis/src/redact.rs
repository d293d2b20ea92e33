//! Credentials never leave through `Debug`: the password in a URL's user info
//! is replaced by `***`.

/// `url` with the password of its user info replaced by `***`
/// (`redis://user:***@host:6379/0`); a URL without a password is returned as is.
///
/// ```
/// use cache_store_redis::redact_url;
///
/// assert_eq!(redact_url("redis://app:s3cret@cache:6379/0"), "redis://app:***@cache:6379/0");
/// assert_eq!(redact_url("rediss://:s3cret@cache"), "rediss://:***@cache");
/// assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
/// ```
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end],
        &userinfo[..colon],
        &rest[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_and_everything_else_kept() {
        for (url, want) in [
            ("redis://u:p@h:1/2", "redis://u:***@h:1/2"),
            ("redis://:p@h", "redis://:***@h"),
            ("redis://u:p:with:colons@h", "redis://u:***@h"),
            ("redis://u:p@ss@h", "redis://u:***@h"),
            ("redis://u@h", "redis://u@h"),
            ("redis://h:6379", "redis://h:6379"),
            ("not a url", "not a url"),
            ("redis://h/0?x=a@b", "redis://h/0?x=a@b"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn a_builder_debug_shows_no_password() {
        let one = crate::RedisStore::builder().url("redis://app:s3cret@cache:6379/0");
        let many = crate::RedisStore::builder()
            .cluster(["redis://:s3cret@a:7000", "redis://:s3cret@b:7001"]);
        for shown in [format!("{one:?}"), format!("{many:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains(":***@"), "{shown}");
        }
    }
}

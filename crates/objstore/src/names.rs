//! S3's naming rules for buckets and keys.

use crate::ObjectError;

/// Longest key, in bytes (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a bucket name against S3's rules: 3–63 characters of lowercase letters, digits, `.`
/// and `-`; starting and ending with a letter or digit; no `..`; not an IPv4 address.
pub fn check_bucket_name(name: &str) -> Result<(), ObjectError> {
    let bad = |why: &str| {
        Err(ObjectError::InvalidBucketName(
            name.to_owned(),
            why.to_owned(),
        ))
    };
    if !(3..=63).contains(&name.len()) {
        return bad("bucket names are 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("use lowercase letters, digits, '.' and '-'");
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !name.bytes().next().is_some_and(edge) || !name.bytes().last().is_some_and(edge) {
        return bad("bucket names start and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("bucket names have no two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("bucket names are not IP addresses");
    }
    Ok(())
}

/// Checks an object key: 1 to [`MAX_KEY_BYTES`] bytes.
pub fn check_key(key: &str) -> Result<(), ObjectError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ObjectError::InvalidKey(format!(
            "keys are 1 to {MAX_KEY_BYTES} bytes (got {})",
            key.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket", "logs.2024", "a1b", &"a".repeat(63)] {
            assert!(check_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "under_score",
            "sp ace",
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }
}

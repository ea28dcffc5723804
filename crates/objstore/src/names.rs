//! S3's naming rules for buckets and keys.

use crate::ObjectError;

/// Longest key, in bytes (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a bucket name against S3's rules (the manifest's rule, so `buckets = [...]` in
/// `nimbus.toml` and the S3 API agree).
pub fn check_bucket_name(name: &str) -> Result<(), ObjectError> {
    nimbus_manifest::check_bucket_name(name)
        .map_err(|why| ObjectError::InvalidBucketName(name.to_owned(), why))
}

/// Checks an object key: 1 to [`MAX_KEY_BYTES`] bytes.
pub fn check_key(key: &str) -> Result<(), ObjectError> {
    if key.is_empty() {
        return Err(ObjectError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
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

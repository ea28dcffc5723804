//! The master key that seals every secret.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::SecretError;

/// A 256-bit key. Its `Debug` never prints it.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// Parses 64 hex digits (surrounding whitespace ignored), as operators supply it.
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), key.as_mut_slice())
            .map_err(|_| SecretError::Key("expected 64 hexadecimal digits (32 bytes)".into()))?;
        Ok(Self(key))
    }

    /// Reads the key file at `path`, or creates it with a fresh random key (mode 0600) if it
    /// does not exist. Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), SecretError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((
                Self::from_hex(&text)
                    .map_err(|e| SecretError::Key(format!("{}: {e}", path.display())))?,
                false,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; 32]);
                rand::rng().fill_bytes(key.as_mut_slice());
                write_private(path, hex::encode(key.as_slice()).as_bytes())?;
                Ok((Self(key), true))
            }
            Err(source) => Err(SecretError::Io {
                context: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    pub(crate) fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(self.0.as_slice()))
    }
}

/// Writes `bytes` to `path` atomically, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    let io = |context: &str| {
        let context = format!("{context} {}", path.display());
        move |source| SecretError::Io { context, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io("writing"))?;
    file.write_all(bytes).map_err(io("writing"))?;
    file.sync_all().map_err(io("syncing"))?;
    std::fs::rename(&tmp, path).map_err(io("writing"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_read_back_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let (a, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        let (b, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.0.as_slice(), b.0.as_slice());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(format!("{a:?}"), "MasterKey(***)");
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(MasterKey::from_hex("abc").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(MasterKey::from_hex(&format!("  {}\n", "ab".repeat(32))).is_ok());
    }
}

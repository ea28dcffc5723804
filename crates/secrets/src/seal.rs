//! Authenticated encryption under the master key — what the secret store seals values with, and
//! what other stores that must keep a secret retrievable (S3 access keys: SigV4 needs the secret
//! itself) use too.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::{MasterKey, SecretError};

/// Nonce length of a sealed value's prefix.
const NONCE: usize = 12;

/// Seals and opens values with ChaCha20-Poly1305. `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    /// A sealer under `key`.
    pub fn new(key: &MasterKey) -> Self {
        Self {
            cipher: key.cipher(),
        }
    }

    /// `[nonce: 12][ciphertext + tag]`, bound to `context` (associated data): the result opens
    /// only with the same key and the same context.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Store("encryption failed".into()))?;
        let mut out = Vec::with_capacity(NONCE + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens what [`Sealer::seal`] made for `context`; [`SecretError::Decrypt`] naming the
    /// context if the key or the context differ, or the bytes were altered.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        let fail = || SecretError::Decrypt(context.to_owned());
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE).ok_or_else(fail)?;
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| fail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_the_same_key_and_context() {
        let a = Sealer::new(&MasterKey::from_hex(&"01".repeat(32)).unwrap());
        let b = Sealer::new(&MasterKey::from_hex(&"02".repeat(32)).unwrap());
        let sealed = a.seal("t/a/one", b"value").unwrap();
        assert_eq!(a.open("t/a/one", &sealed).unwrap().as_slice(), b"value");
        assert!(a.open("t/a/two", &sealed).is_err());
        assert!(b.open("t/a/one", &sealed).is_err());
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert!(a.open("t/a/one", &altered).is_err());
        assert!(a.open("t/a/one", &sealed[..5]).is_err());
        assert_eq!(format!("{a:?}"), "Sealer(***)");
    }
}

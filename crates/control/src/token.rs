//! The API token: generated on first start, stored only as its SHA-256, compared in constant
//! time.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ControlError;
use crate::store::StateStore;

const TOKEN_HASH: &str = "api_token_sha256";

/// A fresh random token: `nmb_` + 64 hex digits (256 bits).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("nmb_{}", hex::encode(bytes))
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Ensures a token exists. Returns `Some(token)` only when one was created now — the only
/// moment its plain text is known.
pub fn ensure(store: &StateStore) -> Result<Option<String>, ControlError> {
    if store.get_meta(TOKEN_HASH)?.is_some() {
        return Ok(None);
    }
    Ok(Some(rotate(store)?))
}

/// Replaces the token with a new one and returns it.
pub fn rotate(store: &StateStore) -> Result<String, ControlError> {
    let token = generate();
    store.set_meta(TOKEN_HASH, &hash(&token))?;
    Ok(token)
}

/// Checks a presented token against the stored hash.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    expected: [u8; 32],
}

impl TokenCheck {
    /// Loads the stored hash.
    pub fn load(store: &StateStore) -> Result<Self, ControlError> {
        let stored = store
            .get_meta(TOKEN_HASH)?
            .ok_or_else(|| ControlError::Store("no API token configured".into()))?;
        let expected: [u8; 32] = stored
            .try_into()
            .map_err(|_| ControlError::Store("stored token hash is corrupt".into()))?;
        Ok(Self { expected })
    }

    /// Whether `token` is the API token. Constant time in the token's content.
    pub fn verify(&self, token: &str) -> bool {
        let presented = hash(token);
        presented
            .iter()
            .zip(self.expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        let token = ensure(&store).unwrap().expect("created");
        assert!(ensure(&store).unwrap().is_none());
        let check = TokenCheck::load(&store).unwrap();
        assert!(check.verify(&token));
        assert!(!check.verify("nmb_wrong"));
        assert!(!check.verify(""));
    }
}

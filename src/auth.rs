//! Client authentication with `API_KEYS` and `[[api_keys]]`: `authorization: Bearer <key>`,
//! compared in constant time; a named key brings its access scope (`config::KeyAccess`), a
//! plain key full access under a name derived from it (`key-` and 8 hex digits of its
//! SHA-256), so what a key stores (sessions, responses) is its own either way. It runs
//! inside the `ChatService` methods, so the gRPC server and the in-process HTTP gateway
//! (which passes the header on as metadata) share one check.

use std::sync::Arc;

use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{KeyAccess, Secret};

/// The accepted keys: plain ones (full access) and named ones with their access; none
/// at all means no authentication.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    /// Every key with its access.
    keys: Vec<(Secret, Arc<KeyAccess>)>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key: send `Authorization: Bearer <key>`")]
    Missing,
    #[error("invalid API key")]
    Invalid,
}

impl ApiKeys {
    pub fn new(keys: Vec<Secret>) -> Self {
        Self::with_named(keys, Vec::new())
    }

    /// Plain keys and named keys (`[[api_keys]]`).
    pub fn with_named(plain: Vec<Secret>, named: Vec<(Secret, KeyAccess)>) -> Self {
        let mut keys: Vec<_> = plain
            .into_iter()
            .map(|k| {
                let access = KeyAccess::unrestricted(plain_key_name(k.expose()));
                (k, Arc::new(access))
            })
            .collect();
        keys.extend(named.into_iter().map(|(k, a)| (k, Arc::new(a))));
        Self { keys }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks an `authorization` header value: the key's access (`None`: no authentication
    /// configured), or why it is refused.
    pub fn check(&self, authorization: Option<&str>) -> Result<Option<Arc<KeyAccess>>, AuthError> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let Some(value) = authorization else {
            return Err(AuthError::Missing);
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or(AuthError::Missing)?;
        // Compare against every key without stopping early or branching on a match.
        let mut matched = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, (key, _)) in self.keys.iter().enumerate() {
            let hit = key.expose().as_bytes().ct_eq(token.as_bytes());
            index = u64::conditional_select(&index, &(i as u64), hit);
            matched |= hit;
        }
        if bool::from(matched) {
            let i = usize::try_from(index).unwrap_or(usize::MAX);
            Ok(self.keys.get(i).map(|(_, access)| access.clone()))
        } else {
            Err(AuthError::Invalid)
        }
    }
}

/// The name a plain key goes by: `key-` and the first 8 hex digits of its SHA-256 (stable
/// across restarts and replicas, and says nothing usable about the key).
fn plain_key_name(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("key-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_bearer_keys() {
        let open = ApiKeys::default();
        assert_eq!(open.check(None), Ok(None));
        let keys = ApiKeys::new(vec![Secret::new("k1"), Secret::new("k2")]);
        assert_eq!(keys.check(None), Err(AuthError::Missing));
        assert_eq!(keys.check(Some("Basic abc")), Err(AuthError::Missing));
        assert_eq!(keys.check(Some("Bearer nope")), Err(AuthError::Invalid));
        assert_eq!(keys.check(Some("Bearer k")), Err(AuthError::Invalid));
        let k2 = keys.check(Some("Bearer k2")).unwrap().unwrap();
        let k1 = keys.check(Some("bearer k1")).unwrap().unwrap();
        assert!(
            k1.name.starts_with("key-") && k1.name.len() == 12,
            "{}",
            k1.name
        );
        assert_ne!(k1.name, k2.name);
        assert_eq!(k1.name, plain_key_name("k1"));
        assert_eq!(k1.models, None);
        assert!(k1.request_servers);
    }

    #[test]
    fn a_named_key_carries_its_access() {
        let access = |name: &str| KeyAccess {
            name: name.into(),
            allowed_servers: Some(vec!["fx".into()]),
            allowed_tools: None,
            request_servers: false,
            models: None,
        };
        let keys = ApiKeys::with_named(
            vec![Secret::new("plain")],
            vec![
                (Secret::new("k-a"), access("alpha")),
                (Secret::new("k-b"), access("beta")),
            ],
        );
        assert!(
            keys.check(Some("Bearer plain"))
                .unwrap()
                .unwrap()
                .name
                .starts_with("key-")
        );
        assert_eq!(
            keys.check(Some("Bearer k-b")).unwrap().unwrap().name,
            "beta"
        );
        assert_eq!(
            keys.check(Some("Bearer k-a")).unwrap().unwrap().name,
            "alpha"
        );
        assert_eq!(keys.check(Some("Bearer k-c")), Err(AuthError::Invalid));
    }
}

//! Client authentication with `API_KEYS`: `authorization: Bearer <key>`, compared in
//! constant time. It runs inside the `ChatService` methods, so the gRPC server and the
//! in-process HTTP gateway (which passes the header on as metadata) share one check.

use subtle::ConstantTimeEq;

use crate::config::Secret;

/// The accepted keys; empty means no authentication.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<Secret>,
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
        Self { keys }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks an `authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let Some(value) = authorization else {
            return Err(AuthError::Missing);
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or(AuthError::Missing)?;
        // Compare against every key without stopping early.
        let matched = self.keys.iter().fold(subtle::Choice::from(0), |acc, key| {
            acc | key.expose().as_bytes().ct_eq(token.as_bytes())
        });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_bearer_keys() {
        let open = ApiKeys::default();
        assert_eq!(open.check(None), Ok(()));
        let keys = ApiKeys::new(vec![Secret::new("k1"), Secret::new("k2")]);
        assert_eq!(keys.check(None), Err(AuthError::Missing));
        assert_eq!(keys.check(Some("Basic abc")), Err(AuthError::Missing));
        assert_eq!(keys.check(Some("Bearer nope")), Err(AuthError::Invalid));
        assert_eq!(keys.check(Some("Bearer k")), Err(AuthError::Invalid));
        assert_eq!(keys.check(Some("Bearer k2")), Ok(()));
        assert_eq!(keys.check(Some("bearer k1")), Ok(()));
    }
}

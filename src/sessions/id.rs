//! [`SessionId`]: the validated, unguessable name of a session.
//!
//! Server-generated ids are 128 random bits (a uuid v4 in its 32-hex-digit simple form);
//! a client-supplied id is accepted when it is a safe token, so it can be used as a key
//! in every backend (SQLite row, Redis key, map key) without escaping.

use std::{fmt, str::FromStr};

use super::SessionError;

/// Longest accepted id, in characters.
pub const MAX_ID_LEN: usize = 128;

/// The id of a session: 1-128 characters of `A-Z a-z 0-9 _ - .`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    /// A new unguessable id (128 random bits as 32 lowercase hex digits).
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Accepts a client-supplied id if it is a valid token.
    pub fn parse(raw: &str) -> Result<Self, SessionError> {
        let reason = if raw.is_empty() {
            Some("it is empty".to_string())
        } else if raw.len() > MAX_ID_LEN {
            Some(format!(
                "it is {} characters long (at most {MAX_ID_LEN})",
                raw.len()
            ))
        } else {
            raw.chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
                .map(|c| format!("it contains {c:?}"))
        };
        match reason {
            None => Ok(Self(raw.to_string())),
            Some(reason) => Err(SessionError::InvalidId {
                id: raw.chars().take(MAX_ID_LEN).collect(),
                reason,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This id in the namespace of the key named `owner`: the id a store keeps for it, so
    /// the same client id of two keys names two sessions, and a key cannot reach another's.
    /// (The prefix is 12 hex digits of the owner name's SHA-256 and a dot.)
    pub fn scoped(&self, owner: &str) -> Self {
        Self(format!("{}{}", owner_prefix(owner), self.0))
    }

    /// The client's id of a stored id of `owner` (the id itself when it is not scoped).
    pub fn unscoped<'a>(stored: &'a str, owner: &str) -> &'a str {
        stored
            .strip_prefix(owner_prefix(owner).as_str())
            .unwrap_or(stored)
    }
}

fn owner_prefix(owner: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(owner.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.")
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SessionId {
    type Err = SessionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn scoped_ids_differ_per_owner_and_unscope_back() {
        let id = SessionId::parse("alice").unwrap();
        let (a, b) = (id.scoped("team-a"), id.scoped("team-b"));
        assert_ne!(a, b);
        assert_ne!(a.as_str(), "alice");
        assert_eq!(SessionId::unscoped(a.as_str(), "team-a"), "alice");
        assert_eq!(SessionId::unscoped(b.as_str(), "team-a"), b.as_str());
    }

    #[test]
    fn generated_ids_are_32_hex_digits_and_distinct() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn client_tokens_are_accepted() {
        for ok in ["a", "my-chat_1.2", &"x".repeat(128)] {
            assert_eq!(SessionId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn invalid_ids_are_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            (&*"x".repeat(129), "129 characters"),
            ("a b", "' '"),
            ("a/b", "'/'"),
            ("ü", "'ü'"),
            ("{x}", "'{'"),
        ];
        for (bad, why) in cases {
            let err = SessionId::parse(bad).unwrap_err();
            assert!(matches!(err, SessionError::InvalidId { .. }), "{bad}");
            let text = err.to_string();
            assert!(text.contains(why), "{bad}: {text}");
            assert!(text.contains("A-Z"), "{text}");
        }
    }
}

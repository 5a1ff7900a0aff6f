//! Encryption of stored OAuth credentials: XChaCha20-Poly1305 (RustCrypto's
//! `chacha20poly1305`) with the key of `mcp.token_key` (`MCP_CHAT_TOKEN_KEY`), a random
//! 24-byte nonce per record, and the record's id as associated data, so a record copied
//! under another server's id does not open.
//!
//! The sealed form is text, `v1.` + base64(nonce ‖ ciphertext), because the session store
//! keeps record bodies as strings.

use base64::Engine as _;
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};

use super::OAuthError;

const VERSION: &str = "v1.";
const NONCE: usize = 24;

/// The key and the cipher built from it. `Debug` shows nothing of the key.
pub struct TokenCipher(XChaCha20Poly1305);

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher(<key>)")
    }
}

impl TokenCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Self(XChaCha20Poly1305::new(key.into()))
    }

    /// A cipher with a fresh random key, for tokens that live in this process only.
    pub fn ephemeral() -> Self {
        Self::new(&rand::random::<[u8; 32]>())
    }

    /// Encrypts `plain`, bound to `id`.
    pub fn seal(&self, id: &str, plain: &[u8]) -> Result<String, OAuthError> {
        let nonce_bytes = rand::random::<[u8; NONCE]>();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let sealed = self
            .0
            .encrypt(
                nonce,
                Payload {
                    msg: plain,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| OAuthError::Vault("encryption failed".into()))?;
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        Ok(format!(
            "{VERSION}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
        ))
    }

    /// Decrypts what [`Self::seal`] made for the same `id` with the same key.
    pub fn open(&self, id: &str, sealed: &str) -> Result<Vec<u8>, OAuthError> {
        let undecodable = || {
            OAuthError::Vault(format!(
                "the stored credentials {id} are not in a form this version reads"
            ))
        };
        let body = sealed.strip_prefix(VERSION).ok_or_else(undecodable)?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(body)
            .map_err(|_| undecodable())?;
        if bytes.len() < NONCE {
            return Err(undecodable());
        }
        let (nonce, text) = bytes.split_at(NONCE);
        self.0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: text,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| {
                OAuthError::Vault(format!(
                    "the stored credentials {id} do not open with this MCP_CHAT_TOKEN_KEY (the key changed, or the record was altered): run `mcp-chat auth login` again"
                ))
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_record_opens_only_with_its_key_and_id() {
        let cipher = TokenCipher::new(&[7; 32]);
        let sealed = cipher.seal("oauth-a", b"secret token").unwrap();
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("secret"));
        assert_eq!(cipher.open("oauth-a", &sealed).unwrap(), b"secret token");
        // Another id, another key, an altered byte, garbage: refused.
        assert!(cipher.open("oauth-b", &sealed).is_err());
        assert!(TokenCipher::new(&[8; 32]).open("oauth-a", &sealed).is_err());
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(
            cipher
                .open("oauth-a", std::str::from_utf8(&altered).unwrap())
                .is_err()
        );
        assert!(cipher.open("oauth-a", "v1.!!").is_err());
        assert!(cipher.open("oauth-a", "plain").is_err());
        // Two seals of one text differ (fresh nonce).
        assert_ne!(sealed, cipher.seal("oauth-a", b"secret token").unwrap());
    }
}

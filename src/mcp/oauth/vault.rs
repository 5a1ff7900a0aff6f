//! Where OAuth credentials live: one sealed record per remote server in the session store
//! (a [`PendingRecord`] of kind `oauth_credentials`), so every replica of a shared store
//! (SQLite on one host, Redis across hosts) uses, refreshes and revokes the same tokens.
//!
//! A record holds the client (its id, a registered secret, the redirect URI it was
//! registered with) and rmcp's [`StoredCredentials`], as JSON sealed by [`TokenCipher`].
//! [`ServerCredentials`] is rmcp's [`CredentialStore`] over one record; its refresh guard is
//! the store's lock on the record, so two replicas never spend one refresh token twice (a
//! rotating authorization server would revoke the whole grant).
//!
//! Without `mcp.token_key` the vault is a memory store of this process with a random key:
//! tokens work, but do not survive a restart and are not shared.

use std::{sync::Arc, time::Duration};

use oauth2::TokenResponse as _;
use rmcp::transport::auth::{
    AuthError, CredentialRefreshGuard, CredentialStore, StoredCredentials,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{OAuthError, cipher::TokenCipher};
use crate::sessions::{MemoryStore, PendingRecord, SessionId, SessionStore, now_millis};

const KIND: &str = "oauth_credentials";
/// A record is kept this long after its last write (a refresh token rarely lives longer).
const KEEP: Duration = Duration::from_secs(400 * 24 * 3600);
/// How long a refresh may wait for another replica's refresh of the same record.
const REFRESH_WAIT: Duration = Duration::from_secs(30);

/// The client a server's tokens were issued to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientRecord {
    pub client_id: String,
    /// A secret the authorization server issued at registration (not a configured one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub redirect_uri: String,
}

/// Everything stored for one server.
#[derive(Clone, Serialize, Deserialize)]
pub struct VaultEntry {
    pub server: String,
    pub url: String,
    #[serde(default)]
    pub client: Option<ClientRecord>,
    #[serde(default)]
    pub credentials: Option<StoredCredentials>,
    /// Unix milliseconds of the last write.
    pub updated_at_ms: i64,
}

impl VaultEntry {
    pub fn new(server: &str, url: &str) -> Self {
        Self {
            server: server.to_string(),
            url: url.to_string(),
            client: None,
            credentials: None,
            updated_at_ms: now_millis(),
        }
    }

    /// Whether an access token is stored.
    pub fn has_token(&self) -> bool {
        self.credentials
            .as_ref()
            .is_some_and(|c| c.token_response.is_some())
    }

    /// Unix seconds when the stored access token expires, when the server said.
    pub fn expires_at(&self) -> Option<u64> {
        let creds = self.credentials.as_ref()?;
        let token = creds.token_response.as_ref()?;
        Some(creds.token_received_at? + token.expires_in()?.as_secs())
    }

    pub fn has_refresh_token(&self) -> bool {
        self.credentials
            .as_ref()
            .and_then(|c| c.token_response.as_ref())
            .is_some_and(|t| t.refresh_token().is_some())
    }
}

impl std::fmt::Debug for VaultEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultEntry")
            .field("server", &self.server)
            .field("client_id", &self.client.as_ref().map(|c| &c.client_id))
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// The sealed credential records of every server, in a session store.
#[derive(Debug)]
pub struct TokenVault {
    store: Arc<dyn SessionStore>,
    cipher: TokenCipher,
    persistent: bool,
}

impl TokenVault {
    /// A vault in `store`, sealed with `key`.
    pub fn new(store: Arc<dyn SessionStore>, key: &[u8; 32]) -> Self {
        Self {
            store,
            cipher: TokenCipher::new(key),
            persistent: true,
        }
    }

    /// A vault in this process's memory, sealed with a random key.
    pub fn in_memory() -> Self {
        Self {
            store: Arc::new(MemoryStore::new(KEEP)),
            cipher: TokenCipher::ephemeral(),
            persistent: false,
        }
    }

    /// The vault `token_key` asks for: in `store` when a key is set, else in memory.
    pub fn from_config(store: Arc<dyn SessionStore>, token_key: &str) -> Result<Self, OAuthError> {
        if token_key.trim().is_empty() {
            return Ok(Self::in_memory());
        }
        let key = crate::config::decode_token_key(token_key)
            .map_err(|e| OAuthError::Vault(format!("MCP_CHAT_TOKEN_KEY {e}")))?;
        Ok(Self::new(store, &key))
    }

    /// Whether tokens outlive this process (and reach other replicas).
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// The record id of a server: a digest of its name and URL, so a renamed or moved
    /// server starts afresh and the id says nothing about either.
    pub fn record_id(server: &str, url: &str) -> String {
        let digest = Sha256::new()
            .chain_update(server.as_bytes())
            .chain_update([0u8])
            .chain_update(url.as_bytes())
            .finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("oauth-{hex}")
    }

    pub async fn load(&self, server: &str, url: &str) -> Result<Option<VaultEntry>, OAuthError> {
        let id = Self::record_id(server, url);
        let Some(record) = self.store.pending(&id).await.map_err(store_error)? else {
            return Ok(None);
        };
        let plain = self.cipher.open(&id, &record.body)?;
        serde_json::from_slice(&plain).map(Some).map_err(|e| {
            OAuthError::Vault(format!("the stored credentials {id} are unreadable: {e}"))
        })
    }

    pub async fn save(&self, entry: &VaultEntry) -> Result<(), OAuthError> {
        let id = Self::record_id(&entry.server, &entry.url);
        let mut entry = entry.clone();
        entry.updated_at_ms = now_millis();
        let plain = serde_json::to_vec(&entry)
            .map_err(|e| OAuthError::Vault(format!("cannot encode credentials: {e}")))?;
        let record = PendingRecord {
            body: self.cipher.seal(&id, &plain)?,
            id,
            session: None,
            kind: KIND.into(),
            answer: None,
            expires_at_ms: now_millis().saturating_add(crate::sessions::millis(KEEP)),
        };
        self.store.put_pending(&record).await.map_err(store_error)
    }

    /// Forgets a server's client and tokens.
    pub async fn remove(&self, server: &str, url: &str) -> Result<(), OAuthError> {
        self.store
            .remove_pending(&Self::record_id(server, url))
            .await
            .map_err(store_error)
    }

    /// Exclusive use of a server's record across replicas, until the lock is dropped.
    pub async fn lock(
        &self,
        server: &str,
        url: &str,
    ) -> Result<crate::sessions::SessionLock, OAuthError> {
        let id = SessionId::parse(&format!("{}.lock", Self::record_id(server, url)))
            .map_err(store_error)?;
        self.store
            .lock(&id, REFRESH_WAIT)
            .await
            .map_err(store_error)
    }

    /// rmcp's credential store over one server's record.
    pub fn credentials(self: &Arc<Self>, server: &str, url: &str) -> ServerCredentials {
        ServerCredentials {
            vault: self.clone(),
            server: server.to_string(),
            url: url.to_string(),
        }
    }
}

fn store_error(e: crate::sessions::SessionError) -> OAuthError {
    OAuthError::Vault(format!("the session store failed: {e}"))
}

fn to_auth(e: OAuthError) -> AuthError {
    AuthError::CredentialStoreError(e.to_string())
}

/// One server's record as rmcp's [`CredentialStore`].
#[derive(Clone, Debug)]
pub struct ServerCredentials {
    vault: Arc<TokenVault>,
    server: String,
    url: String,
}

impl ServerCredentials {
    async fn entry(&self) -> Result<VaultEntry, OAuthError> {
        Ok(self
            .vault
            .load(&self.server, &self.url)
            .await?
            .unwrap_or_else(|| VaultEntry::new(&self.server, &self.url)))
    }
}

#[async_trait::async_trait]
impl CredentialStore for ServerCredentials {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        Ok(self
            .vault
            .load(&self.server, &self.url)
            .await
            .map_err(to_auth)?
            .and_then(|e| e.credentials))
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let mut entry = self.entry().await.map_err(to_auth)?;
        if entry
            .client
            .as_ref()
            .is_some_and(|c| c.client_id != credentials.client_id)
        {
            // Issued to another client than the one recorded (a new registration).
            entry.client = None;
        }
        entry.credentials = Some(credentials);
        self.vault.save(&entry).await.map_err(to_auth)
    }

    async fn clear(&self) -> Result<(), AuthError> {
        let mut entry = self.entry().await.map_err(to_auth)?;
        entry.credentials = None;
        self.vault.save(&entry).await.map_err(to_auth)
    }

    /// The authorization server refused the refresh token (revoked, or spent): the tokens
    /// are dropped, unless another replica has stored newer ones meanwhile.
    async fn on_refresh_token_rejected(
        &self,
        rejected: &StoredCredentials,
    ) -> Result<(), AuthError> {
        let mut entry = self.entry().await.map_err(to_auth)?;
        let refresh = |c: &StoredCredentials| {
            c.token_response
                .as_ref()
                .and_then(|t| t.refresh_token().map(|r| r.secret().clone()))
        };
        let same = entry
            .credentials
            .as_ref()
            .is_some_and(|c| refresh(c) == refresh(rejected));
        if same && let Some(creds) = entry.credentials.as_mut() {
            creds.token_response = None;
            self.vault.save(&entry).await.map_err(to_auth)?;
        }
        Ok(())
    }

    async fn acquire_refresh_guard(&self) -> Result<Option<CredentialRefreshGuard>, AuthError> {
        let lock = self
            .vault
            .lock(&self.server, &self.url)
            .await
            .map_err(to_auth)?;
        Ok(Some(CredentialRefreshGuard::new(lock)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn credentials(access: &str, refresh: Option<&str>) -> StoredCredentials {
        let mut json = serde_json::json!({
            "access_token": access, "token_type": "bearer", "expires_in": 3600,
        });
        if let Some(r) = refresh {
            json["refresh_token"] = r.into();
        }
        StoredCredentials::new(
            "client-1".into(),
            Some(serde_json::from_value(json).unwrap()),
            vec!["mcp:read".into()],
            Some(1_000),
        )
    }

    #[tokio::test]
    async fn records_are_sealed_in_the_store_and_come_back() {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(KEEP));
        let vault = Arc::new(TokenVault::new(store.clone(), &[3; 32]));
        let creds = vault.credentials("github", "https://mcp.example.com/mcp");
        assert!(creds.load().await.unwrap().is_none());
        creds
            .save(credentials("at-secret-1", Some("rt-secret-1")))
            .await
            .unwrap();
        let id = TokenVault::record_id("github", "https://mcp.example.com/mcp");
        let raw = store.pending(&id).await.unwrap().unwrap();
        assert_eq!(raw.kind, "oauth_credentials");
        assert!(!raw.body.contains("secret"), "{}", raw.body);
        let entry = vault
            .load("github", "https://mcp.example.com/mcp")
            .await
            .unwrap()
            .unwrap();
        assert!(entry.has_token() && entry.has_refresh_token());
        assert_eq!(entry.expires_at(), Some(4_600));
        assert!(!format!("{entry:?}").contains("secret"));
        // Another key cannot read it; a wrong key is an error, not an empty vault.
        let other = TokenVault::new(store, &[4; 32]);
        let err = other
            .load("github", "https://mcp.example.com/mcp")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("MCP_CHAT_TOKEN_KEY"), "{err}");
    }

    #[tokio::test]
    async fn a_rejected_refresh_token_drops_the_tokens_unless_newer_ones_are_stored() {
        let vault = Arc::new(TokenVault::in_memory());
        let creds = vault.credentials("s", "http://127.0.0.1:1/mcp");
        creds.save(credentials("a1", Some("r1"))).await.unwrap();
        // Another replica stored r2 meanwhile: the rejection of r1 changes nothing.
        creds.save(credentials("a2", Some("r2"))).await.unwrap();
        creds
            .on_refresh_token_rejected(&credentials("a1", Some("r1")))
            .await
            .unwrap();
        assert!(
            creds
                .load()
                .await
                .unwrap()
                .unwrap()
                .token_response
                .is_some()
        );
        creds
            .on_refresh_token_rejected(&credentials("a2", Some("r2")))
            .await
            .unwrap();
        let left = creds.load().await.unwrap().unwrap();
        assert!(left.token_response.is_none());
        assert_eq!(left.client_id, "client-1");
    }

    #[tokio::test]
    async fn the_refresh_guard_excludes_a_second_holder_until_dropped() {
        let vault = Arc::new(TokenVault::in_memory());
        let creds = vault.credentials("s", "http://127.0.0.1:1/mcp");
        let guard = creds.acquire_refresh_guard().await.unwrap();
        let again =
            tokio::time::timeout(Duration::from_millis(200), creds.acquire_refresh_guard()).await;
        assert!(
            again.is_err(),
            "a second guard was granted while the first is held"
        );
        drop(guard);
        creds.acquire_refresh_guard().await.unwrap();
    }
}

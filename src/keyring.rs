//! The keyring joins the key-hierarchy rules of [`crate::core::keys`] with the KEK adapters of `sesame-kms` and the
//! [`Store`]: it finds or makes the DEK of a scope, unwraps DEKs through their KEK, and seals and opens content
//! under them.
//!
//! Unwrapped DEKs live only in a bounded, expiring cache of prepared envelope keys ([`PreparedKey`] zeroizes its
//! material when the last reference drops, which is when the cache evicts it). While a DEK is cached, sealing and
//! opening make no KMS call and no database round trip. Concurrent misses for the same DEK are coalesced into one
//! unwrap. The envelope derives a fresh key per message from a 256-bit random nonce, so no per-DEK message
//! counter is kept (envelope-spec/SPEC.md explains why none is needed). The DEKs and wraps it makes are dated by the
//! [`Clock`] it is given; it reads no clock itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use moka::future::Cache;
use sesame_envelope::{KeyId, Plaintext, PreparedKey};
use sesame_kms::{Dek, Kek, KekUri, KmsError, WrapContext, WrappedDek};

use crate::clock::Clock;
use crate::core::keys::Scope;
use crate::store::{DekRecord, DekState, DekWithWraps, Inserted, KekRecord, Store, StoreError, WrapRecord};

/// Failures of the keyring. None of them carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A KEK adapter failed (its error names the KEK, never key material).
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// No KEK is registered to wrap new DEKs for this owner.
    #[error("no default KEK is registered for {owner}")]
    NoDefaultKek {
        /// `the instance` or `org <id>`.
        owner: String,
    },
    /// A wrap names a KEK that is not registered.
    #[error("DEK {dek_id} is wrapped only by KEKs this server cannot use ({detail})")]
    NoUsableWrap {
        /// The DEK.
        dek_id: String,
        /// Which KEKs were tried and why they failed.
        detail: String,
    },
    /// The envelope could not be opened: wrong key, wrong owner, tampered or malformed. Deliberately one opaque
    /// variant, so callers cannot be used as an oracle.
    #[error("ciphertext could not be decrypted")]
    Undecryptable,
    /// The plaintext is too large for an envelope.
    #[error("plaintext is too large to seal")]
    TooLarge,
}

/// Cache and adapter settings.
#[derive(Debug, Clone)]
pub struct KeyringConfig {
    /// Most unwrapped DEKs kept at once.
    pub max_cached_deks: u64,
    /// How long an unwrapped DEK stays cached after it was unwrapped.
    pub dek_ttl: Duration,
    /// How long the "current DEK of a scope" answer is reused before the store is asked again (so a rotation made
    /// by another replica is seen within this time).
    pub current_ttl: Duration,
}

impl Default for KeyringConfig {
    fn default() -> Self {
        KeyringConfig {
            max_cached_deks: 10_000,
            dek_ttl: Duration::from_secs(15 * 60),
            current_ttl: Duration::from_secs(60),
        }
    }
}

/// Counters for `/metrics` and benchmarks.
#[derive(Debug, Default)]
pub struct KeyringMetrics {
    /// KEK unwrap calls made (each is a KMS/HSM round trip on remote adapters).
    pub kms_unwraps: AtomicU64,
    /// KEK wrap calls made.
    pub kms_wraps: AtomicU64,
    /// DEK lookups answered from the cache.
    pub cache_hits: AtomicU64,
    /// DEK lookups that had to load and unwrap.
    pub cache_misses: AtomicU64,
    /// DEKs created.
    pub deks_created: AtomicU64,
}

/// An unwrapped DEK, ready to seal and open.
struct LoadedDek {
    id: KeyId,
    /// `None` for a scope string this version does not know: such a DEK opens nothing.
    scope: Option<Scope>,
    key: PreparedKey,
}

/// Finds, makes, unwraps and uses DEKs.
pub struct Keyring {
    store: Arc<dyn Store>,
    keks: RwLock<HashMap<String, Arc<dyn Kek>>>,
    deks: Cache<KeyId, Arc<LoadedDek>>,
    current: Cache<Scope, Arc<LoadedDek>>,
    metrics: KeyringMetrics,
    clock: Clock,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("cached_deks", &self.deks.entry_count())
            .finish_non_exhaustive()
    }
}

/// A stored wrap as the KEK adapters take it.
fn wrapped_of(w: &WrapRecord) -> WrappedDek {
    WrappedDek {
        ciphertext: w.wrapped.clone(),
        wrap_alg: w.wrap_alg.clone(),
        kek_version: w.kek_version.clone(),
        binding: w.binding.clone(),
    }
}

/// A new (not yet primary) wrap of DEK `dek_id` under KEK `kek_id`, made at `now_ms`, to store.
fn record_of(dek_id: &str, kek_id: &str, wrapped: WrappedDek, now_ms: i64) -> WrapRecord {
    WrapRecord {
        dek_id: dek_id.to_owned(),
        kek_id: kek_id.to_owned(),
        kek_version: wrapped.kek_version,
        wrapped: wrapped.ciphertext,
        wrap_alg: wrapped.wrap_alg,
        binding: wrapped.binding,
        primary: false,
        created_ms: now_ms,
    }
}

/// The 16-byte envelope key id of a DEK id (a UUID).
fn key_id_of(dek_id: &str) -> Result<KeyId, StoreError> {
    uuid::Uuid::parse_str(dek_id)
        .map(|u| KeyId(*u.as_bytes()))
        .map_err(|_| StoreError::Corrupt {
            table: "deks",
            detail: format!("DEK id {dek_id:?} is not a UUID"),
        })
}

/// The wrap context of a DEK: its id and scope, length-prefixed, so a wrapped DEK moved to another row fails.
fn wrap_context(dek_id: &str, scope: &str) -> WrapContext {
    WrapContext::new().with("dek", dek_id).with("scope", scope)
}

impl Keyring {
    /// A keyring over `store` with no KEK adapters registered yet; `clock` dates the DEKs and wraps it makes.
    pub fn new(store: Arc<dyn Store>, config: &KeyringConfig, clock: Clock) -> Keyring {
        Keyring {
            store,
            keks: RwLock::new(HashMap::new()),
            deks: Cache::builder()
                .max_capacity(config.max_cached_deks)
                .time_to_live(config.dek_ttl)
                .build(),
            current: Cache::builder()
                .max_capacity(config.max_cached_deks)
                .time_to_live(config.current_ttl)
                .build(),
            metrics: KeyringMetrics::default(),
            clock,
        }
    }

    /// The keyring's counters.
    pub fn metrics(&self) -> &KeyringMetrics {
        &self.metrics
    }

    /// Makes an opened KEK adapter available for the KEK row `kek_id`.
    pub fn register_kek(&self, kek_id: &str, kek: Arc<dyn Kek>) {
        let mut keks = self.keks.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        keks.insert(kek_id.to_owned(), kek);
    }

    fn kek(&self, kek_id: &str) -> Option<Arc<dyn Kek>> {
        let keks = self.keks.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        keks.get(kek_id).cloned()
    }

    /// Generates a DEK for `scope` at `generation`, wrapped by `kek` (registered as `kek_id`), without storing it.
    /// Returns the rows to store and the plaintext DEK.
    pub async fn new_dek(
        &self,
        scope: &str,
        generation: i64,
        kek_id: &str,
        kek: &dyn Kek,
    ) -> Result<(DekWithWraps, Dek), KeyringError> {
        let id = uuid::Uuid::now_v7().to_string();
        let dek = Dek::generate();
        self.metrics.kms_wraps.fetch_add(1, Ordering::Relaxed);
        let wrapped = kek.wrap(&dek, &wrap_context(&id, scope)).await?;
        let now = self.clock.now_ms();
        let rows = DekWithWraps {
            dek: DekRecord {
                id: id.clone(),
                org_id: scope.parse::<Scope>().ok().and_then(|s| s.org_id().map(str::to_owned)),
                scope: scope.to_owned(),
                generation,
                state: DekState::Active,
                created_ms: now,
            },
            wraps: vec![WrapRecord {
                dek_id: id,
                kek_id: kek_id.to_owned(),
                kek_version: wrapped.kek_version,
                wrapped: wrapped.ciphertext,
                wrap_alg: wrapped.wrap_alg,
                binding: wrapped.binding,
                primary: true,
                created_ms: now,
            }],
        };
        Ok((rows, dek))
    }

    /// Unwraps a stored DEK through the first of its wraps whose KEK works, primary first. Always calls the KEK:
    /// this is the cache-miss path, and the start-up check.
    pub async fn unwrap(&self, stored: &DekWithWraps) -> Result<Dek, KeyringError> {
        let mut failures = Vec::new();
        for wrap in &stored.wraps {
            let Some(kek) = self.kek(&wrap.kek_id) else {
                failures.push(format!("KEK {} is not registered", wrap.kek_id));
                continue;
            };
            let wrapped = wrapped_of(wrap);
            self.metrics.kms_unwraps.fetch_add(1, Ordering::Relaxed);
            match kek
                .unwrap(&wrapped, &wrap_context(&stored.dek.id, &stored.dek.scope))
                .await
            {
                Ok(dek) => return Ok(dek),
                // With a single wrap, the adapter's own classified error says the most.
                Err(e) if stored.wraps.len() == 1 => return Err(e.into()),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(KeyringError::NoUsableWrap {
            dek_id: stored.dek.id.clone(),
            detail: failures.join("; "),
        })
    }

    async fn load(&self, stored: DekWithWraps) -> Result<Arc<LoadedDek>, KeyringError> {
        self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
        let key_id = key_id_of(&stored.dek.id)?;
        let dek = self.unwrap(&stored).await?;
        Ok(Arc::new(LoadedDek {
            id: key_id,
            scope: stored.dek.scope.parse().ok(),
            key: PreparedKey::new(key_id, dek.as_bytes()),
        }))
    }

    /// The unwrapped DEK with this id, from the cache or loaded and unwrapped once (concurrent callers share the
    /// one load). `Ok(None)` when no such DEK exists.
    async fn dek_by_id(&self, key_id: KeyId) -> Result<Option<Arc<LoadedDek>>, KeyringError> {
        if let Some(hit) = self.deks.get(&key_id).await {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(hit));
        }
        let result = self
            .deks
            .try_get_with(key_id, async {
                let dek_id = uuid::Uuid::from_bytes(key_id.0).to_string();
                match self.store.dek(&dek_id).await? {
                    Some(stored) => self.load(stored).await,
                    None => Err(KeyringError::Undecryptable),
                }
            })
            .await;
        match result {
            Ok(loaded) => Ok(Some(loaded)),
            Err(e) => match Arc::try_unwrap(e) {
                Ok(KeyringError::Undecryptable) => Ok(None),
                Ok(other) => Err(other),
                Err(shared) => Err(clone_shared(&shared)),
            },
        }
    }

    /// The DEK that seals new content of `scope`, made (and wrapped by the owner's default KEK) on first use.
    async fn current_dek(&self, scope: &Scope) -> Result<Arc<LoadedDek>, KeyringError> {
        if let Some(hit) = self.current.get(scope).await {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        let scope_text = scope.to_string();
        let result = self
            .current
            .try_get_with_by_ref(scope, self.find_or_create(scope, &scope_text))
            .await;
        result.map_err(|e| match Arc::try_unwrap(e) {
            Ok(err) => err,
            Err(shared) => clone_shared(&shared),
        })
    }

    async fn find_or_create(&self, scope: &Scope, scope_text: &str) -> Result<Arc<LoadedDek>, KeyringError> {
        if let Some(stored) = self.store.current_dek(scope_text).await? {
            return self.cached_or_load(stored).await;
        }
        let kek_row = self
            .store
            .default_kek(scope.org_id())
            .await?
            .ok_or_else(|| KeyringError::NoDefaultKek {
                owner: scope
                    .org_id()
                    .map_or_else(|| "the instance".to_owned(), |o| format!("org {o}")),
            })?;
        let kek = self.kek_for(&kek_row).await?;
        let (rows, dek) = self.new_dek(scope_text, 1, &kek_row.id, kek.as_ref()).await?;
        match self.store.insert_dek(&rows).await? {
            Inserted::New => {
                self.metrics.deks_created.fetch_add(1, Ordering::Relaxed);
                let key_id = key_id_of(&rows.dek.id)?;
                let loaded = Arc::new(LoadedDek {
                    key: PreparedKey::new(key_id, dek.as_bytes()),
                    id: key_id,
                    scope: Some(scope.clone()),
                });
                self.deks.insert(loaded.id, loaded.clone()).await;
                Ok(loaded)
            }
            // Another replica made generation 1 between our read and our insert: use theirs.
            Inserted::AlreadyExists => {
                let stored = self.store.current_dek(scope_text).await?.ok_or_else(|| {
                    KeyringError::Store(StoreError::Corrupt {
                        table: "deks",
                        detail: format!("scope {scope_text} has a generation 1 but no active DEK"),
                    })
                })?;
                self.cached_or_load(stored).await
            }
        }
    }

    async fn cached_or_load(&self, stored: DekWithWraps) -> Result<Arc<LoadedDek>, KeyringError> {
        if let Some(hit) = self.deks.get(&key_id_of(&stored.dek.id)?).await {
            return Ok(hit);
        }
        let loaded = self.load(stored).await?;
        self.deks.insert(loaded.id, loaded.clone()).await;
        Ok(loaded)
    }

    /// The adapter of a KEK row: registered already, or opened now from its URI (never creating a key).
    async fn kek_for(&self, row: &KekRecord) -> Result<Arc<dyn Kek>, KeyringError> {
        if let Some(kek) = self.kek(&row.id) {
            return Ok(kek);
        }
        Err(KeyringError::Kms(KmsError::Config {
            kek: row
                .uri
                .parse::<KekUri>()
                .map_or_else(|_| row.uri.clone(), |u| u.to_string()),
            reason: "this KEK is registered but was not opened by the server".into(),
        }))
    }

    /// Seals `plaintext` under the current DEK of `scope`, bound to `aad`.
    pub async fn seal(&self, scope: &Scope, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let dek = self.current_dek(scope).await?;
        sesame_envelope::seal(&dek.key, aad, plaintext, &mut rand::rng()).map_err(|_| KeyringError::TooLarge)
    }

    /// Seals several plaintexts under one DEK lookup.
    pub async fn seal_many<'a>(
        &self,
        scope: &Scope,
        aad: &[u8],
        plaintexts: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Vec<u8>>, KeyringError> {
        let dek = self.current_dek(scope).await?;
        let mut rng = rand::rng();
        plaintexts
            .into_iter()
            .map(|p| sesame_envelope::seal(&dek.key, aad, p, &mut rng).map_err(|_| KeyringError::TooLarge))
            .collect()
    }

    /// Opens an envelope that must belong to `scope` and carry `aad`. Every failure — unknown DEK, a DEK of
    /// another scope, tampering, wrong associated data — is the one opaque [`KeyringError::Undecryptable`];
    /// only infrastructure failures (store, KMS) are reported as themselves.
    pub async fn open(&self, scope: &Scope, aad: &[u8], envelope: &[u8]) -> Result<Plaintext, KeyringError> {
        let header = sesame_envelope::parse_header(envelope).map_err(|_| KeyringError::Undecryptable)?;
        let dek = self
            .dek_by_id(header.key_id)
            .await?
            .ok_or(KeyringError::Undecryptable)?;
        if dek.scope.as_ref() != Some(scope) {
            return Err(KeyringError::Undecryptable);
        }
        sesame_envelope::open(&dek.key, aad, envelope).map_err(|_| KeyringError::Undecryptable)
    }

    /// Wraps a stored DEK with another KEK: unwraps it through `from_kek` only, wraps it with `to_kek`, and
    /// proves the new wrap by unwrapping it again. Returns the new wrap (not primary), ready to store. The DEK's
    /// plaintext lives only inside this call.
    pub async fn rewrap(
        &self,
        stored: &DekWithWraps,
        from_kek: &str,
        to_kek: &str,
    ) -> Result<WrapRecord, KeyringError> {
        let target = self.kek(to_kek).ok_or_else(|| KeyringError::NoUsableWrap {
            dek_id: stored.dek.id.clone(),
            detail: format!("target KEK {to_kek} is not registered"),
        })?;
        let source_only = DekWithWraps {
            dek: stored.dek.clone(),
            wraps: stored.wraps.iter().filter(|w| w.kek_id == from_kek).cloned().collect(),
        };
        let ctx = wrap_context(&stored.dek.id, &stored.dek.scope);
        // Inside one KMS (AWS ReEncrypt) the DEK never leaves it; the new wrap is then proven by unwrapping it.
        if let (Some(source), Some(wrap)) = (self.kek(from_kek), source_only.wraps.first())
            && let Some(result) = target.rewrap_from(source.as_ref(), &wrapped_of(wrap), &ctx).await
        {
            self.metrics.kms_wraps.fetch_add(1, Ordering::Relaxed);
            let wrapped = result?;
            self.metrics.kms_unwraps.fetch_add(1, Ordering::Relaxed);
            target.unwrap(&wrapped, &ctx).await?;
            return Ok(record_of(&stored.dek.id, to_kek, wrapped, self.clock.now_ms()));
        }
        let dek = self.unwrap(&source_only).await?;
        self.metrics.kms_wraps.fetch_add(1, Ordering::Relaxed);
        let wrapped = target.wrap(&dek, &ctx).await?;
        self.metrics.kms_unwraps.fetch_add(1, Ordering::Relaxed);
        let back = target.unwrap(&wrapped, &ctx).await?;
        if back.as_bytes() != dek.as_bytes() {
            return Err(KeyringError::NoUsableWrap {
                dek_id: stored.dek.id.clone(),
                detail: format!("target KEK {} did not give back the DEK it wrapped", target.uri()),
            });
        }
        Ok(record_of(&stored.dek.id, to_kek, wrapped, self.clock.now_ms()))
    }

    /// Unwraps a stored DEK through one KEK only (a migration's verification).
    pub async fn unwrap_with(&self, stored: &DekWithWraps, kek_id: &str) -> Result<(), KeyringError> {
        let only = DekWithWraps {
            dek: stored.dek.clone(),
            wraps: stored.wraps.iter().filter(|w| w.kek_id == kek_id).cloned().collect(),
        };
        if only.wraps.is_empty() {
            return Err(KeyringError::NoUsableWrap {
                dek_id: stored.dek.id.clone(),
                detail: format!("no wrap under KEK {kek_id}"),
            });
        }
        self.unwrap(&only).await.map(drop)
    }

    /// Proves at start-up that every KEK which wraps stored DEKs can still unwrap one of them. A KEK that cannot
    /// (a replaced key file, a wrong passphrase, an unreachable KMS) stops the start with an error naming it.
    pub async fn verify_keks(&self) -> Result<usize, KeyringError> {
        let mut checked = 0;
        for row in self.store.keks().await? {
            let Some(sample) = self.store.sample_wrap(&row.id).await? else {
                continue;
            };
            let only_this = DekWithWraps {
                dek: sample.dek.clone(),
                wraps: sample.wraps.into_iter().filter(|w| w.kek_id == row.id).collect(),
            };
            self.unwrap(&only_this).await?;
            checked += 1;
        }
        Ok(checked)
    }
}

/// Rebuilds an error shared by coalesced cache loads (moka hands every waiter the same `Arc`).
fn clone_shared(e: &KeyringError) -> KeyringError {
    match e {
        KeyringError::Undecryptable => KeyringError::Undecryptable,
        KeyringError::TooLarge => KeyringError::TooLarge,
        KeyringError::NoDefaultKek { owner } => KeyringError::NoDefaultKek { owner: owner.clone() },
        other => KeyringError::NoUsableWrap {
            dek_id: String::new(),
            detail: other.to_string(),
        },
    }
}

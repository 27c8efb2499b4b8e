//! Signed checkpoints of the audit chains: the instance's Ed25519 signing key (made on first start, its private
//! half sealed under the [`Scope::AuditSigning`] DEK like any other protected content, so a copy of the database
//! without the KEK cannot sign), and the checkpointer task that signs each chain's head at least every
//! [`CHECKPOINT_EVERY_RECORDS`](crate::core::audit::CHECKPOINT_EVERY_RECORDS) records or
//! [`CHECKPOINT_EVERY_MS`](crate::core::audit::CHECKPOINT_EVERY_MS).
//!
//! Before signing, the checkpointer checks that the records since the chain's last checkpoint link up from the head
//! that checkpoint signed; a chain that does not (rewritten under an earlier checkpoint) is reported and never
//! signed again, so a forgery cannot be laundered into a fresh signature.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use tokio::sync::{Mutex, Notify};
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::core::audit::{
    Checkpoint, GENESIS, checkpoint_due, checkpoint_message, hex, key_fingerprint, unhex, verify_from,
};
use crate::core::keys::{Scope, audit_signing_key_aad};
use crate::keyring::{Keyring, KeyringError};
use crate::store::{Inserted, Store, StoreError};

/// How often the checkpointer looks for chains whose last checkpoint is older than the time limit.
const TICK: Duration = Duration::from_secs(5);
/// Records read per query while checking a chain's new records before signing.
const PAGE: i64 = 5_000;

/// Why the signing key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("audit signing key: {0}")]
    Keyring(#[from] KeyringError),
    #[error("audit signing key: {0}")]
    Store(#[from] StoreError),
    #[error("the stored audit signing key is not a valid Ed25519 key for its public key")]
    BadKey,
    #[error("could not generate the audit signing key")]
    Generate,
}

/// The audit signing key, unsealed. Its `Debug` shows the fingerprint only.
pub struct AuditSigner {
    pair: Ed25519KeyPair,
    fingerprint: String,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl AuditSigner {
    /// Loads and unseals the stored key, or makes, seals and stores one on first start (a replica that loses the
    /// race to store it uses the winner's). A new key is dated by `clock`.
    pub async fn load_or_create(
        store: &dyn Store,
        keyring: &Keyring,
        clock: &Clock,
    ) -> Result<AuditSigner, SignerError> {
        for _ in 0..2 {
            if let Some((public, sealed)) = store.audit_signing_key().await? {
                let pkcs8 = keyring
                    .open(&Scope::AuditSigning, &audit_signing_key_aad(&public), &sealed)
                    .await?;
                let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| SignerError::BadKey)?;
                if pair.public_key().as_ref() != public.as_slice() {
                    return Err(SignerError::BadKey);
                }
                return Ok(AuditSigner::from_pair(pair));
            }
            let pkcs8 = Zeroizing::new(
                Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| SignerError::Generate)?
                    .as_ref()
                    .to_vec(),
            );
            let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| SignerError::Generate)?;
            let public = pair.public_key().as_ref().to_vec();
            let sealed = keyring
                .seal(&Scope::AuditSigning, &audit_signing_key_aad(&public), &pkcs8)
                .await?;
            if store.insert_audit_signing_key(&public, &sealed, clock.now_ms()).await? == Inserted::New {
                return Ok(AuditSigner::from_pair(pair));
            }
        }
        Err(SignerError::BadKey)
    }

    fn from_pair(pair: Ed25519KeyPair) -> AuditSigner {
        AuditSigner {
            fingerprint: key_fingerprint(pair.public_key().as_ref()),
            pair,
        }
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// `sha256:` and the hex SHA-256 of the public key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A checkpoint of record `seq` (hash `head`) of `chain`, made at `time_ms`.
    pub fn sign(&self, chain: &str, seq: i64, head: &str, time_ms: i64) -> Checkpoint {
        let signature = self.pair.sign(&checkpoint_message(chain, seq, head, time_ms));
        Checkpoint {
            chain: chain.to_owned(),
            seq,
            head: head.to_owned(),
            time_ms,
            key: self.fingerprint.clone(),
            signature: hex(signature.as_ref()),
        }
    }
}

/// The last checkpoint this process knows of per chain: `(seq, time_ms, head)`.
type Known = HashMap<String, (i64, i64, String)>;

/// Signs chain heads when they are due.
pub struct Checkpointer {
    signer: AuditSigner,
    store: Arc<dyn Store>,
    /// Loaded from the store on first use.
    known: Mutex<Option<Known>>,
    clock: Clock,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// Starts the checkpointer: it looks after every committed audit batch (`committed`) and every few seconds;
    /// `clock` decides whether a checkpoint is due and dates it.
    pub fn start(
        signer: AuditSigner,
        store: Arc<dyn Store>,
        committed: Arc<Notify>,
        clock: Clock,
    ) -> Arc<Checkpointer> {
        let me = Arc::new(Checkpointer {
            signer,
            store,
            known: Mutex::new(None),
            clock,
        });
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = committed.notified() => {}
                }
                let Some(me) = weak.upgrade() else { return };
                me.pass(None).await;
            }
        });
        me
    }

    /// The signer (for its public key and fingerprint).
    pub fn signer(&self) -> &AuditSigner {
        &self.signer
    }

    /// Signs the head of every chain that is due, and of `force` whenever it grew since its last checkpoint.
    pub async fn pass(&self, force: Option<&str>) {
        let heads = match self.store.audit_heads().await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "audit checkpoints: could not read the chain heads");
                return;
            }
        };
        let mut guard = self.known.lock().await;
        if guard.is_none() {
            match self.store.last_audit_checkpoints().await {
                Ok(cps) => *guard = Some(cps.into_iter().map(|c| (c.chain, (c.seq, c.time_ms, c.head))).collect()),
                Err(e) => {
                    tracing::warn!(error = %e, "audit checkpoints: could not read the last checkpoints");
                    return;
                }
            }
        }
        let Some(known) = guard.as_mut() else { return };
        let now = self.clock.now_ms();
        for (chain, seq) in heads {
            let last = known.get(&chain).map(|(s, t, _)| (*s, *t));
            let forced = force == Some(chain.as_str()) && last.map_or(seq > 0, |(s, _)| seq > s);
            if !(forced || checkpoint_due(last, seq, now)) {
                continue;
            }
            if let Err(e) = self.checkpoint(known, &chain, now).await {
                tracing::error!(chain = %chain, error = %e, "audit chain not checkpointed");
            }
        }
    }

    async fn checkpoint(&self, known: &mut Known, chain: &str, now: i64) -> Result<(), String> {
        let (mut seq, mut hash) = match known.get(chain) {
            Some((s, _, h)) => (*s, unhex(h).ok_or("the last checkpoint's head is not a hash")?),
            None => (0, GENESIS),
        };
        let from = seq;
        loop {
            let page = self
                .store
                .audit_records(chain, seq, PAGE)
                .await
                .map_err(|e| e.to_string())?;
            (seq, hash) = verify_from(seq, hash, &page).map_err(|e| {
                format!("the chain does not follow its last signed checkpoint (record {from}): {e}; not signing")
            })?;
            if (page.len() as i64) < PAGE {
                break;
            }
        }
        if seq == from {
            return Ok(());
        }
        let head = hex(&hash);
        let cp = self.signer.sign(chain, seq, &head, now);
        self.store
            .insert_audit_checkpoint(&cp)
            .await
            .map_err(|e| e.to_string())?;
        known.insert(chain.to_owned(), (seq, now, head));
        Ok(())
    }
}

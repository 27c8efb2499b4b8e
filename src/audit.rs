//! The audit writer: one task per process appends audit events to the store in batches (group commit), so each
//! chain stays ordered and a request waits for the commit of its batch rather than for a lock. A request whose event
//! cannot be written fails: nothing that must be audited happens unaudited. Open sessions ride along: a session row
//! is inserted in the same transaction as the audit record of its open.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::core::audit::AuditEvent;
use crate::store::Store;
use crate::store::envs::SessionRecord;

/// Most events committed in one transaction.
const MAX_BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log could not be written: {0}")]
    Write(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

/// An event, an open session to insert with it (if any), and who waits for the commit.
type Pending = (AuditEvent, Option<SessionRecord>, oneshot::Sender<Result<(), String>>);

/// A handle to the process's audit writer; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

impl AuditLog {
    /// Starts the writer task over `store`.
    pub fn start(store: Arc<dyn Store>) -> AuditLog {
        let (tx, mut rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let events: Vec<AuditEvent> = batch.iter().map(|(e, _, _)| e.clone()).collect();
                let sessions: Vec<SessionRecord> = batch.iter().filter_map(|(_, s, _)| s.clone()).collect();
                let result = store
                    .append_audit_with_sessions(&events, &sessions)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, events = events.len(), "audit batch not written");
                }
                for (_, _, reply) in batch {
                    let _ = reply.send(result.clone());
                }
            }
        });
        AuditLog { tx }
    }

    /// Appends `event` and waits until its batch is committed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.record_with(event, None).await
    }

    /// Appends `event` and inserts `session` in the same batch transaction (an open and its session land together,
    /// one commit for many concurrent opens), and waits until the batch is committed.
    pub async fn record_with(&self, event: AuditEvent, session: Option<SessionRecord>) -> Result<(), AuditError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send((event, session, reply))
            .await
            .map_err(|_| AuditError::Stopped)?;
        done.await.map_err(|_| AuditError::Stopped)?.map_err(AuditError::Write)
    }
}

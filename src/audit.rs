//! The audit writer: one task per process appends audit events to the store in batches (group commit), so each
//! chain stays ordered and a request waits for the commit of its batch rather than for a lock. A request whose event
//! cannot be written fails: nothing that must be audited happens unaudited.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::core::audit::AuditEvent;
use crate::store::Store;

/// Most events committed in one transaction.
const MAX_BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log could not be written: {0}")]
    Write(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

type Pending = (AuditEvent, oneshot::Sender<Result<(), String>>);

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
                let events: Vec<AuditEvent> = batch.iter().map(|(e, _)| e.clone()).collect();
                let result = store.append_audit(&events).await.map(drop).map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, events = events.len(), "audit batch not written");
                }
                for (_, reply) in batch {
                    let _ = reply.send(result.clone());
                }
            }
        });
        AuditLog { tx }
    }

    /// Appends `event` and waits until its batch is committed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (reply, done) = oneshot::channel();
        self.tx.send((event, reply)).await.map_err(|_| AuditError::Stopped)?;
        done.await.map_err(|_| AuditError::Stopped)?.map_err(AuditError::Write)
    }
}

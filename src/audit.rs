//! The audit writer: one task per process appends audit events to the store in batches (group commit), so each
//! chain stays ordered and a request waits for the commit of its batch rather than for a lock. A request whose event
//! cannot be written fails: nothing that must be audited happens unaudited. A stored session row (what a session
//! cannot re-derive: provider outputs) rides along, inserted in the same transaction as the audit record of its open;
//! sessions without one store nothing (`server::esc::open`).
//!
//! Writes to the store do not come here: each store write method takes its event and appends it in the write's own
//! transaction, under the same chain-head lock the writer's batches take (see `docs/ARCHITECTURE.md`, "Audit log").
//! The writer carries what changes nothing else: opens, refusals, decrypts, tallies.
//!
//! High-rate calls (the stack secrets API) are not written one record per call: [`CallAudit`] tallies them per
//! principal, source, target, operation and outcome per second ([`crate::core::call_tally`]) and hands each closed
//! window to the writer; [`CallAudit::flush_all`] writes the open windows at a graceful stop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::clock::Clock;
use crate::core::audit::AuditEvent;
use crate::core::call_tally::{CallKey, CallTally};
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
    /// Woken after every committed batch (the checkpointer looks whether a chain needs a signed checkpoint).
    committed: Arc<Notify>,
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
        let committed = Arc::new(Notify::new());
        let wake = committed.clone();
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
                match &result {
                    Ok(()) => wake.notify_one(),
                    Err(e) => tracing::error!(error = %e, events = events.len(), "audit batch not written"),
                }
                for (_, _, reply) in batch {
                    let _ = reply.send(result.clone());
                }
            }
        });
        AuditLog { tx, committed }
    }

    /// Notified after each committed batch.
    pub fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    /// Appends `events` (in as few batches as the writer makes of them) and waits until all are committed. On a
    /// failure, returns the events that were not written (the others were) and the first error.
    pub async fn record_many(&self, events: Vec<AuditEvent>) -> Result<(), (Vec<AuditEvent>, AuditError)> {
        let mut waiting = Vec::with_capacity(events.len());
        let mut events = events.into_iter();
        while let Some(event) = events.next() {
            let (reply, done) = oneshot::channel();
            if let Err(mpsc::error::SendError((event, _, _))) = self.tx.send((event.clone(), None, reply)).await {
                let mut failed: Vec<AuditEvent> = vec![event];
                failed.extend(events);
                return Err((failed, AuditError::Stopped));
            }
            waiting.push((event, done));
        }
        let mut failed = Vec::new();
        let mut first_error = None;
        for (event, done) in waiting {
            let result = done
                .await
                .map_err(|_| AuditError::Stopped)
                .and_then(|r| r.map_err(AuditError::Write));
            if let Err(e) = result {
                first_error.get_or_insert(e);
                failed.push(event);
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err((failed, e)),
        }
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

/// How often closed windows of the call tally are handed to the writer.
const TALLY_FLUSH_EVERY: Duration = Duration::from_millis(250);

/// The tally of high-rate calls not yet written, and the writer it drains into.
#[derive(Debug)]
pub struct CallAudit {
    tally: Mutex<CallTally>,
    /// Records whose write failed, retried on the next flush (so no call goes uncounted while the store recovers).
    retry: tokio::sync::Mutex<Vec<AuditEvent>>,
    log: AuditLog,
    clock: Clock,
}

impl CallAudit {
    /// A tally draining into `log`, its windows timed by `clock`, flushed by a task for as long as it lives.
    pub fn start(log: AuditLog, clock: Clock) -> Arc<CallAudit> {
        let audit = Arc::new(CallAudit {
            tally: Mutex::new(CallTally::default()),
            retry: tokio::sync::Mutex::new(Vec::new()),
            log,
            clock,
        });
        let weak = Arc::downgrade(&audit);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TALLY_FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(audit) = weak.upgrade() else { return };
                audit.flush_closed().await;
            }
        });
        audit
    }

    /// Counts one request of `values` values.
    pub fn add(&self, key: CallKey, values: u64) {
        let now = self.clock.now_ms();
        self.tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(now, key, values);
    }

    /// Writes the windows that have closed.
    pub async fn flush_closed(&self) {
        let events = self
            .tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_closed(self.clock.now_ms());
        self.write(events).await;
    }

    /// Writes every window, open ones included (a graceful stop); returns whether everything was written.
    pub async fn flush_all(&self) -> bool {
        let events = self.tally.lock().unwrap_or_else(|p| p.into_inner()).take_all();
        self.write(events).await
    }

    async fn write(&self, events: Vec<AuditEvent>) -> bool {
        let mut retry = self.retry.lock().await;
        let mut all = std::mem::take(&mut *retry);
        all.extend(events);
        if all.is_empty() {
            return true;
        }
        match self.log.record_many(all).await {
            Ok(()) => true,
            Err((failed, e)) => {
                tracing::error!(error = %e, records = failed.len(), "tallied stack calls not written; retrying");
                *retry = failed;
                false
            }
        }
    }
}

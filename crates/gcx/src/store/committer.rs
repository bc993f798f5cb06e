//! Group commit: one committer (a task; for SQLite a thread, see [`spawn`]) takes every
//! write from a channel, gathers up to `group_commit_max_rows` rows or
//! `group_commit_interval` after the oldest waiting write, commits them in ONE
//! transaction, and only then answers each caller. If the group transaction fails, each
//! write is retried alone, so one bad batch cannot fail its neighbours, and each caller
//! gets its own answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{Backend, CommitReceipt, PruneCursor, Pruned, ReplayFilter, StoreError, WriteBatch};
use crate::audit_chain::hash::{self, ChainHead, Link};
use crate::audit_chain::{AuditEvent, AuditKeys, Checkpoint};

/// One write, as queued for the committer.
#[derive(Debug)]
pub(crate) enum Work {
    Batch(WriteBatch),
    Delivered {
        id: i64,
        attempts: u32,
        status: u16,
    },
    Retry(Retry),
    Dead(Dead),
    Replay(ReplayFilter),
    Endpoint(EndpointChange),
    /// Sign the chain head unless a checkpoint already covers it.
    Checkpoint,
    Prune(PruneChunk),
}

/// Another attempt of pending outbox message `id` at `next_attempt_at`
/// ([`super::Store::outbox_retry`]).
#[derive(Debug)]
pub(crate) struct Retry {
    pub id: i64,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub error: String,
    pub status: Option<u16>,
}

/// Pending outbox message `id` dead-lettered, with the later pending messages of its key
/// ([`super::Store::outbox_dead`]).
#[derive(Debug)]
pub(crate) struct Dead {
    pub id: i64,
    pub attempts: u32,
    pub reason: String,
    pub status: Option<u16>,
}

/// Endpoint `name` disabled or enabled ([`super::Store::set_endpoint_disabled`]).
#[derive(Debug)]
pub(crate) struct EndpointChange {
    pub name: String,
    pub disabled: bool,
    pub reason: Option<String>,
}

/// Delete at most `limit` finished triggers last updated before `before`, and at most
/// `limit` delivered webhooks created before it, looking after `after`
/// ([`super::Store::prune`]).
#[derive(Debug)]
pub(crate) struct PruneChunk {
    pub before: DateTime<Utc>,
    pub limit: u32,
    pub after: PruneCursor,
}

impl Work {
    /// Rows this write adds to a group (for `group_commit_max_rows`).
    fn rows(&self) -> usize {
        match self {
            Work::Batch(b) => (b.triggers.len() + b.outbox.len() + b.audit.len()).max(1),
            _ => 1,
        }
    }
}

/// A committed write's answer.
#[derive(Debug)]
pub(crate) enum Done {
    Receipt(CommitReceipt),
    Count(u64),
    /// What a prune chunk deleted, and where the next one looks.
    Pruned(Pruned, PruneCursor),
    Unit,
}

/// What a group's writer needs besides the items.
#[derive(Debug)]
pub(crate) struct GroupContext {
    /// Signs checkpoints; loaded (or generated) when the store opens.
    pub keys: AuditKeys,
    /// Write a checkpoint at every multiple of this seq (0 = only at close).
    pub checkpoint_every: u64,
    /// Keep raw parameters in audit records.
    pub store_parameters: bool,
}

impl GroupContext {
    /// `events` placed after `head`, recorded at `now`; `head` moves to the last.
    pub(crate) fn link<'a>(
        &self,
        head: &mut ChainHead,
        events: Vec<&'a AuditEvent>,
        now: DateTime<Utc>,
    ) -> Vec<Link<'a>> {
        hash::link(head, now, events, self.store_parameters)
    }

    /// The checkpoints `records` make due, signed at `now`: one for each record at a
    /// multiple of `checkpoint_every`.
    pub(crate) fn due_checkpoints(
        &self,
        records: &[Link<'_>],
        now: DateTime<Utc>,
    ) -> Vec<Checkpoint> {
        if self.checkpoint_every == 0 {
            return Vec::new();
        }
        records
            .iter()
            .filter(|r| r.seq % self.checkpoint_every == 0)
            .map(|r| Checkpoint::sign(&self.keys, r.seq, &r.hash, now))
            .collect()
    }
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Done, StoreError>>,
    /// When the caller queued it: a write never waits for company longer than the
    /// interval after this, even when the committer was busy with the previous group.
    queued_at: Instant,
}

enum Message {
    Job(Job),
    /// Flush, checkpoint, stop; answered when done.
    Close(oneshot::Sender<Result<(), StoreError>>),
}

/// Counters of the committer, for tests, benchmarks and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommitStats {
    /// Transactions that committed a group (retries alone not counted).
    pub groups: u64,
    /// Writes answered successfully.
    pub writes: u64,
    /// Groups that failed and were retried write by write.
    pub split_groups: u64,
}

#[derive(Default)]
struct Counters {
    groups: AtomicU64,
    writes: AtomicU64,
    split_groups: AtomicU64,
}

/// The callers' side of the committer.
pub(crate) struct Handle {
    tx: mpsc::Sender<Message>,
    counters: Arc<Counters>,
}

impl Handle {
    /// Starts the committer: for SQLite on a thread of its own (see [`spawn`]), for
    /// PostgreSQL as a task on the current runtime.
    pub(crate) fn start(
        backend: Backend,
        context: GroupContext,
        max_rows: usize,
        interval: Duration,
    ) -> Result<Handle, StoreError> {
        // Bounded: when the database falls behind, callers wait instead of piling up.
        let (tx, rx) = mpsc::channel(max_rows.clamp(64, 65_536));
        let counters = Arc::new(Counters::default());
        let committer = Committer {
            backend,
            context,
            max_rows: max_rows.max(1),
            interval,
            counters: counters.clone(),
        };
        spawn(committer, rx)?;
        Ok(Handle { tx, counters })
    }

    pub(crate) async fn submit(&self, work: Work) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work,
            reply,
            queued_at: Instant::now(),
        };
        self.tx
            .send(Message::Job(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Message::Close(reply)).await.is_err() {
            return Ok(()); // already closed
        }
        answer.await.unwrap_or(Ok(()))
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            groups: self.counters.groups.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            split_groups: self.counters.split_groups.load(Ordering::Relaxed),
        }
    }
}

/// Runs `committer` until its channel closes.
///
/// The SQLite committer gets a thread with its own single-threaded runtime: it writes
/// synchronously on its `rusqlite` connection (`sqlite::writer`), which blocks the thread
/// for the length of each group, so it must not be a worker of the shared runtime, and
/// its wake-ups never queue behind the other tasks of that runtime. PostgreSQL connections do socket I/O registered with the runtime that opened them, so
/// that committer stays a task there.
fn spawn(committer: Committer, rx: mpsc::Receiver<Message>) -> Result<(), StoreError> {
    if !matches!(committer.backend, Backend::Sqlite(_)) {
        tokio::spawn(committer.run(rx));
        return Ok(());
    }
    let location = committer.backend.location().to_string();
    let failed = |e: std::io::Error| StoreError::Database {
        location: location.clone(),
        detail: format!("cannot start the committer thread: {e}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    std::thread::Builder::new()
        .name("gcx-committer".into())
        .spawn(move || runtime.block_on(committer.run(rx)))
        .map_err(failed)?;
    Ok(())
}

struct Committer {
    backend: Backend,
    context: GroupContext,
    max_rows: usize,
    interval: Duration,
    counters: Arc<Counters>,
}

impl Committer {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        while let Some(first) = rx.recv().await {
            let mut group = Vec::new();
            let mut close = None;
            match first {
                Message::Job(job) => group.push(job),
                Message::Close(reply) => close = Some(reply),
            }
            if close.is_none() {
                self.gather(&mut rx, &mut group, &mut close).await;
            }
            let mut checkpointed = None;
            if close.is_some() {
                // Anything queued before the close is flushed with the final checkpoint.
                while let Ok(Message::Job(job)) = rx.try_recv() {
                    group.push(job);
                }
                let (reply, answer) = oneshot::channel();
                group.push(Job {
                    work: Work::Checkpoint,
                    reply,
                    queued_at: Instant::now(),
                });
                checkpointed = Some(answer);
            }
            self.commit(group).await;
            if let (Some(reply), Some(answer)) = (close, checkpointed) {
                rx.close();
                while let Ok(Message::Job(job)) = rx.try_recv() {
                    let _ = job.reply.send(Err(StoreError::Closed));
                }
                self.backend.close().await;
                let outcome = match answer.await {
                    Ok(result) => result.map(|_| ()),
                    Err(_) => Err(StoreError::Closed),
                };
                let _ = reply.send(outcome);
                return;
            }
        }
    }

    /// Adds jobs to `group` until it is full, the oldest job has waited the interval, or
    /// a close arrives.
    async fn gather(
        &self,
        rx: &mut mpsc::Receiver<Message>,
        group: &mut Vec<Job>,
        close: &mut Option<oneshot::Sender<Result<(), StoreError>>>,
    ) {
        let mut rows: usize = group.iter().map(|j| j.work.rows()).sum();
        let deadline = group
            .first()
            .map_or_else(Instant::now, |j| j.queued_at + self.interval);
        while rows < self.max_rows {
            let next = match rx.try_recv() {
                Ok(message) => Some(message),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Elapsed: the group is complete.
                    tokio::time::timeout_at(deadline.into(), rx.recv())
                        .await
                        .unwrap_or(None)
                }
            };
            match next {
                Some(Message::Job(job)) => {
                    rows += job.work.rows();
                    group.push(job);
                }
                Some(Message::Close(reply)) => {
                    *close = Some(reply);
                    return;
                }
                None => return,
            }
        }
    }

    /// Commits `group` in one transaction (retrying lock conflicts), or each job alone
    /// when that fails, and answers every job.
    async fn commit(&self, mut group: Vec<Job>) {
        let items: Vec<&Work> = group.iter().map(|j| &j.work).collect();
        let result = self.write_with_retries(&items).await;
        drop(items);
        match result {
            Ok(results) => {
                self.counters.groups.fetch_add(1, Ordering::Relaxed);
                for (job, result) in group.into_iter().zip(results) {
                    self.answer(job, result);
                }
            }
            Err(err) if group.len() == 1 => {
                if let Some(job) = group.pop() {
                    self.answer(job, Err(err));
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, writes = group.len(), "group commit failed; retrying each write alone");
                self.counters.split_groups.fetch_add(1, Ordering::Relaxed);
                for job in group {
                    let result = match self.write_with_retries(&[&job.work]).await {
                        Ok(mut results) => results.pop().unwrap_or(Err(StoreError::Closed)),
                        Err(err) => Err(err),
                    };
                    self.answer(job, result);
                }
            }
        }
    }

    fn answer(&self, job: Job, result: Result<Done, StoreError>) {
        if result.is_ok() {
            self.counters.writes.fetch_add(1, Ordering::Relaxed);
        }
        // A caller that stopped waiting is fine: its write is durable all the same.
        let _ = job.reply.send(result);
    }

    async fn write_with_retries(
        &self,
        items: &[&Work],
    ) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
        let mut attempt = 0;
        loop {
            match self.backend.write_group(items, &self.context).await {
                Err(e) if e.is_transient() && attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "store busy; retrying the group");
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                }
                other => return other,
            }
        }
    }
}

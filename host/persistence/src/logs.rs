//! The batched log path: a [`LogSink`] that never blocks, and the one task that
//! owns the receiving end and appends lines in groups.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use weft_engine::runtime::{LogLine, LogSink};

use crate::db::Db;

/// Lines buffered between drivers and the writer task. When it is full,
/// `append` drops the line (and counts it) rather than stall a driver.
pub(crate) const CHANNEL_CAPACITY: usize = 65_536;
/// A group is written when it has this many lines…
pub(crate) const GROUP_LINES: usize = 500;
/// …or this long after its first line arrived, whichever comes first.
pub(crate) const GROUP_DELAY: Duration = Duration::from_millis(20);
const RETRIES: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(250)];

pub(crate) enum LogMsg {
    Line(LogLine),
    /// Answered once every line sent before it is written (or given up on).
    Flush(oneshot::Sender<()>),
}

/// The [`LogSink`] handed to drivers.
pub(crate) struct ChannelSink {
    tx: mpsc::Sender<LogMsg>,
    dropped: AtomicU64,
}

impl ChannelSink {
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl LogSink for ChannelSink {
    fn append(&self, line: LogLine) {
        if let Err(e) = self.tx.try_send(LogMsg::Line(line)) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Warn on the 1st, 2nd, 4th, 8th… drop, not on every line.
            if n.is_power_of_two() {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "log buffer full",
                    mpsc::error::TrySendError::Closed(_) => "log writer stopped",
                };
                tracing::warn!(dropped_total = n, "{why}: dropping log lines");
            }
        }
    }
}

/// Start the writer task on the current tokio runtime.
pub(crate) fn spawn_writer(db: Db) -> (mpsc::Sender<LogMsg>, Arc<ChannelSink>) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    tokio::spawn(run(db, rx));
    let sink = Arc::new(ChannelSink {
        tx: tx.clone(),
        dropped: AtomicU64::new(0),
    });
    (tx, sink)
}

/// Runs until every sender (the store and all sinks) is gone and the channel
/// is drained.
async fn run(db: Db, mut rx: mpsc::Receiver<LogMsg>) {
    let mut lines = Vec::with_capacity(GROUP_LINES);
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + GROUP_DELAY;
        let mut msg = Some(first);
        while let Some(m) = msg.take() {
            match m {
                LogMsg::Line(line) => lines.push(line),
                LogMsg::Flush(done) => waiters.push(done),
            }
            if lines.len() >= GROUP_LINES || !waiters.is_empty() {
                break;
            }
            msg = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .ok()
                .flatten();
        }
        write_group(&db, &lines).await;
        lines.clear();
        for done in waiters.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn write_group(db: &Db, lines: &[LogLine]) {
    if lines.is_empty() {
        return;
    }
    let mut delays = RETRIES.iter();
    loop {
        match db.append_logs(lines).await {
            Ok(()) => return,
            Err(e) => match delays.next() {
                Some(delay) => {
                    tracing::debug!(error = %e, "appending log lines failed; retrying");
                    tokio::time::sleep(*delay).await;
                }
                None => {
                    tracing::error!(error = %e, lines = lines.len(), "appending log lines failed; dropping them");
                    return;
                }
            },
        }
    }
}

//! `StoreTurn`: the round-robin turn gateway processes on one database share, so that requests
//! spread over the accounts in strict turn whichever process serves them.
//!
//! Why one database call per allocation, and only while there are peers: a strict turn across
//! processes needs one sequencer that every allocation passes through. Claiming turns in blocks
//! (one call per N requests) would be cheaper, but then a process hands out its block's turns
//! in a row while the other hands out a different block, so requests alternating between
//! processes would no longer alternate accounts. So:
//!
//! - each process heartbeats into the store every [`HEARTBEAT`] and counts the processes seen
//!   within [`ALIVE_WITHIN`] (a process joining or leaving announces itself, so the others
//!   count again at once instead of at their next heartbeat);
//! - alone, a process uses its own counter: the request path never waits on the database;
//! - with peers, each allocation takes the next turn from the store: on PostgreSQL one
//!   `SELECT nextval('pool_turn')` (one round trip, no row lock, no commit to wait for), on
//!   SQLite one short write transaction. It is bounded by [`TURN_TIMEOUT`]; a slow or failing
//!   database falls back to the process's own counter rather than delaying the request.
//!
//! While processes join or leave, turns may repeat an account once; the rotation is strict
//! again as soon as every process counts the same peers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use kiro_layers::pool::SharedTurn;
use kiro_layers::store::{Store, StoreError};
use kiro_layers::GatewayError;

/// How often a process says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// A process not seen for this long no longer counts (three missed heartbeats).
pub const ALIVE_WITHIN: Duration = Duration::from_secs(15);

/// Longest a request waits for a shared turn before taking its process's own.
pub const TURN_TIMEOUT: Duration = Duration::from_millis(250);

/// Longest graceful shutdown waits to leave the list of processes.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// See the module docs.
pub struct StoreTurn {
    store: Arc<dyn Store>,
    instance: String,
    shared: AtomicBool,
    left: AtomicBool,
}

impl StoreTurn {
    /// A turn over `store` for a process with a new random instance id.
    pub fn new(store: Arc<dyn Store>) -> Self {
        StoreTurn {
            store,
            instance: uuid::Uuid::new_v4().simple().to_string(),
            shared: AtomicBool::new(false),
            left: AtomicBool::new(false),
        }
    }

    /// Says this process is alive and counts the others; returns whether turns are shared.
    pub async fn heartbeat(&self) -> Result<bool, StoreError> {
        if self.left.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let alive = self.store.heartbeat(&self.instance, ALIVE_WITHIN).await?;
        let shared = alive > 1;
        if self.shared.swap(shared, Ordering::Relaxed) != shared {
            if shared {
                tracing::info!(
                    processes = alive,
                    "sharing the round-robin turn through the database"
                );
            } else {
                tracing::info!("alone on the database: the round-robin turn is this process's own");
            }
        }
        Ok(shared)
    }

    /// Leaves the store's list of processes for good (graceful shutdown): the others stop
    /// asking the database for turns at once.
    pub async fn leave(&self) {
        self.left.store(true, Ordering::Relaxed);
        self.shared.store(false, Ordering::Relaxed);
        // Best effort and bounded: with the database down this must not hold up shutdown (the
        // others drop a silent process from the list after its heartbeat goes stale anyway).
        match tokio::time::timeout(LEAVE_TIMEOUT, self.store.leave(&self.instance)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!("could not leave the list of gateway processes: {error}")
            }
            Err(_) => tracing::warn!(
                "could not leave the list of gateway processes: the database did not answer"
            ),
        }
    }
}

impl SharedTurn for StoreTurn {
    fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }

    fn next_turn(&self) -> BoxFuture<'_, Result<u64, GatewayError>> {
        Box::pin(async move {
            match tokio::time::timeout(TURN_TIMEOUT, self.store.next_turn()).await {
                Ok(Ok(turn)) => Ok(u64::try_from(turn).unwrap_or_default()),
                Ok(Err(error)) => Err(error.into()),
                Err(_) => Err(GatewayError::internal(format!(
                    "the database did not hand out a turn within {} ms",
                    TURN_TIMEOUT.as_millis()
                ))),
            }
        })
    }
}

//! Group commit of subscription requests: the HTTP handlers hand each request to one writer
//! task, which stores whatever has arrived meanwhile in one transaction, wakes the verifiers
//! (`verification::verifier`, which take requests from their table) and only then lets each handler
//! answer 202. Under load, one commit serves many requests; alone, a request is written at
//! once. Nothing is answered before it is stored.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{
    domain::{
        hub_request::SubscriptionRequest,
        ids::{RequestId, UnixMs},
    },
    queue::{Outbox, Queue, Wakers},
    store::{Db, StoreError, requests},
};

/// At most this many requests in one transaction.
const GROUP: usize = 256;

/// Requests waiting for the writer before handlers wait to hand theirs over.
const WAITING: usize = 4096;

struct Arrival {
    request: SubscriptionRequest,
    request_id: Option<String>,
    stored: oneshot::Sender<Result<RequestId, IntakeError>>,
}

/// Why a request was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IntakeError {
    /// The writer task is gone (the process is stopping).
    #[error("the request writer stopped")]
    Stopped,
    /// The group the request was written with failed to commit.
    #[error("the request's group could not be stored")]
    Store(#[source] Arc<StoreError>),
}

/// The handle the HTTP handlers store requests through.
#[derive(Debug, Clone)]
pub struct Intake {
    sender: mpsc::Sender<Arrival>,
}

impl std::fmt::Debug for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arrival").finish_non_exhaustive()
    }
}

impl Intake {
    /// Starts the writer task; it ends when every handle is gone. One writer, on either
    /// backend: its groups commit one after another, so request ids become visible in the order
    /// they were given, and a verification never sees a newer request of a pair before an older
    /// one (several PostgreSQL writers were measured no faster, and would break that).
    /// Each commit wakes the verifiers ([`Outbox::wake`]: other processes' too when this one
    /// runs none).
    pub fn start(db: Db, wakers: Wakers) -> Self {
        let (sender, receiver) = mpsc::channel(WAITING);
        tokio::spawn(write_groups(db, wakers, receiver));
        Self { sender }
    }

    /// Stores `request` for verification; returns once it is committed.
    pub async fn store(
        &self,
        request: SubscriptionRequest,
        request_id: Option<String>,
    ) -> Result<RequestId, IntakeError> {
        let (stored, answer) = oneshot::channel();
        let arrival = Arrival {
            request,
            request_id,
            stored,
        };
        self.sender
            .send(arrival)
            .await
            .map_err(|_| IntakeError::Stopped)?;
        answer.await.map_err(|_| IntakeError::Stopped)?
    }
}

async fn write_groups(db: Db, wakers: Wakers, mut receiver: mpsc::Receiver<Arrival>) {
    let mut group = Vec::with_capacity(GROUP);
    while receiver.recv_many(&mut group, GROUP).await > 0 {
        match write(&db, &wakers, &group).await {
            Ok(ids) => {
                for (arrival, id) in group.drain(..).zip(ids) {
                    let _ = arrival.stored.send(Ok(id));
                }
            }
            Err(error) => {
                // Every request of the group failed with the same cause, logged where each is
                // answered.
                let error = Arc::new(error);
                for arrival in group.drain(..) {
                    let _ = arrival.stored.send(Err(IntakeError::Store(error.clone())));
                }
            }
        }
    }
}

async fn write(db: &Db, wakers: &Wakers, group: &[Arrival]) -> Result<Vec<RequestId>, StoreError> {
    let now = UnixMs::now();
    let mut tx = Outbox::begin(db, wakers).await?;
    let requests: Vec<&SubscriptionRequest> = group.iter().map(|a| &a.request).collect();
    let http_request_ids: Vec<Option<&str>> =
        group.iter().map(|a| a.request_id.as_deref()).collect();
    let ids = requests::insert_group(&mut tx, &requests, &http_request_ids, now).await?;
    tx.wake(Queue::Verify).await?;
    tx.commit().await?;
    Ok(ids)
}

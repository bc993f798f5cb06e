//! The steady load: batches of triggers posted to `POST /v1/triggers` at a set rate
//! until a deadline. A batch the service does not acknowledge (an error answer while the
//! database restarts, a dropped connection) is posted again, the same triggers, until a
//! 202 acknowledges it (a re-post of a stored trigger is acknowledged as a duplicate), so
//! every trigger the service may have stored ends up in the account.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use uuid::Uuid;

use crate::bench::payload::trigger;

/// Requests in flight at once; a tick that finds them all busy waits for one.
const IN_FLIGHT: usize = 8;
/// Pause between re-posts of unacknowledged batches once the load's time is up.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What posting did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Triggers a 202 acknowledged, in acknowledgement order.
    #[serde(skip)]
    pub acknowledged: Vec<Uuid>,
    /// Requests answered with something other than 202, or not answered, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Triggers still unacknowledged when re-posting gave up.
    pub unacknowledged: u64,
    /// Ticks that found every request slot busy (the service was slower than the rate).
    pub late_ticks: u64,
}

/// A batch of triggers and its body.
struct Batch {
    ids: Vec<Uuid>,
    body: Value,
}

/// Where the load posts, and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub http: reqwest::Client,
    /// `…/v1/triggers`.
    pub url: String,
    pub api_key: String,
}

/// Shared between the ticker and its requests.
#[derive(Default)]
struct Shared {
    tally: Mutex<Tally>,
    /// Batches to post again, oldest first.
    retry: Mutex<VecDeque<Batch>>,
}

/// Posts `rate` triggers a second in batches of `batch` until `until`, then re-posts
/// what is unacknowledged until `give_up`.
pub async fn run(
    target: Target,
    rate: f64,
    batch: usize,
    until: Instant,
    give_up: Instant,
) -> Tally {
    let batch = batch.max(1);
    let period = Duration::from_secs_f64(batch as f64 / rate.max(0.001));
    let shared = Arc::new(Shared::default());
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut made = 0usize;
    while Instant::now() < until {
        tick.tick().await;
        let next = shared.retry.lock().pop_front();
        let next = next.unwrap_or_else(|| {
            made += batch;
            new_batch(made - batch, batch)
        });
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                shared.tally.lock().late_ticks += 1;
                match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                }
            }
        };
        let (target, shared) = (target.clone(), shared.clone());
        tokio::spawn(async move {
            post(&target, &shared, next).await;
            drop(permit);
        });
    }
    // Every request answered, then the unacknowledged ones again until none is left.
    let _ = slots.acquire_many(IN_FLIGHT as u32).await;
    loop {
        let next = shared.retry.lock().pop_front();
        let Some(next) = next else { break };
        if Instant::now() > give_up {
            shared.retry.lock().push_front(next);
            break;
        }
        post(&target, &shared, next).await;
        if !shared.retry.lock().is_empty() {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    let left: u64 = shared.retry.lock().iter().map(|b| b.ids.len() as u64).sum();
    let mut tally = std::mem::take(&mut *shared.tally.lock());
    tally.unacknowledged = left;
    tally
}

async fn post(target: &Target, shared: &Shared, batch: Batch) {
    let answer = target
        .http
        .post(&target.url)
        .bearer_auth(&target.api_key)
        .json(&batch.body)
        .send()
        .await;
    let refusal = match answer {
        Ok(r) if r.status().as_u16() == 202 => None,
        Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Some("timed out".to_owned()),
        Err(_) => Some("no answer".to_owned()),
    };
    match refusal {
        None => shared.tally.lock().acknowledged.extend(&batch.ids),
        Some(reason) => {
            *shared.tally.lock().refused.entry(reason).or_default() += 1;
            shared.retry.lock().push_back(batch);
        }
    }
}

/// Triggers `first..first + len` of the run: knowledge searches in sessions of ten.
fn new_batch(first: usize, len: usize) -> Batch {
    let ids: Vec<Uuid> = (0..len).map(|_| Uuid::new_v4()).collect();
    let body = Value::Array(
        ids.iter()
            .enumerate()
            .map(|(i, id)| trigger("soak", first + i, *id, 3))
            .collect(),
    );
    Batch { ids, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_carries_its_ids_in_its_body() {
        let b = new_batch(20, 3);
        let ids: Vec<&str> = b
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["correlationId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, b.ids.iter().map(Uuid::to_string).collect::<Vec<_>>());
        assert_eq!(b.body[0]["executionContext"]["sessionId"], "soak-2");
        let catalogue = gcx_protocol::Catalogue::builtin();
        for t in b.body.as_array().unwrap() {
            assert!(gcx_protocol::validate::validate_trigger(t, &catalogue).is_ok());
        }
    }
}

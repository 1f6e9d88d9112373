//! Task webhooks, signed as Standard Webhooks (https://www.standardwebhooks.com/) says, so a
//! receiver can check them with an existing verifier library:
//! `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `id.timestamp.body`, with a secret in the `whsec_<base64>` form.

use std::time::Duration;

use anyhow::{anyhow, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::store::webhooks::{self as outbox, Delivery};
use crate::store::TaskStore;

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 12;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry waits this long, each next one twice as long, up to an hour.
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(3600);
/// How long to wait again when no secret is configured.
const NO_SECRET_WAIT: Duration = Duration::from_secs(60);

/// The signing key, from `whsec_<base64>`.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn parse(text: &str) -> Result<Secret, String> {
        let encoded = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| "the webhook secret is not whsec_ followed by base64".to_string())?;
        if key.is_empty() {
            return Err("the webhook secret is empty".into());
        }
        Ok(Secret(key))
    }

    /// From `FLEXPRICE_WEBHOOK_SECRET`, if set.
    pub fn from_env() -> Result<Option<Secret>, String> {
        match std::env::var("FLEXPRICE_WEBHOOK_SECRET") {
            Ok(text) if !text.trim().is_empty() => Secret::parse(&text).map(Some),
            _ => Ok(None),
        }
    }

    /// `v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// Sends due deliveries and records each attempt.
pub struct Deliverer {
    client: reqwest::blocking::Client,
    secret: Option<Secret>,
}

impl Deliverer {
    pub fn new(secret: Option<Secret>) -> Result<Deliverer> {
        let client = reqwest::blocking::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("flexprice-import/", env!("CARGO_PKG_VERSION")))
            // A receiver that redirects is not followed: the body is signed for its URL.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow!("setting up the webhook client: {e}"))?;
        Ok(Deliverer { client, secret })
    }

    /// Attempts every delivery due now (of one task, if given), on either backend. Returns
    /// how many were sent.
    pub fn deliver_due(&self, store: &dyn TaskStore, task_id: Option<&str>) -> Result<usize> {
        store.deliver_due_webhooks(task_id, &mut |delivery| self.attempt(delivery))
    }

    fn attempt(&self, delivery: &Delivery) -> outbox::Attempt {
        let Some(secret) = &self.secret else {
            // Not an attempt that failed at the receiver: wait for a process that has it.
            return Err((
                "FLEXPRICE_WEBHOOK_SECRET is not set: deliveries wait for a process that has it".into(),
                Some(Utc::now() + chrono::Duration::from_std(NO_SECRET_WAIT).expect("small")),
            ));
        };
        let timestamp = Utc::now().timestamp();
        let signature = secret.sign(&delivery.id, timestamp, delivery.payload.as_bytes());
        let result = self
            .client
            .post(&delivery.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send();
        let error = match result {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => format!("the receiver answered {}", response.status()),
            Err(e) => e.without_url().to_string(),
        };
        let attempts = delivery.attempts + 1;
        let next = (attempts < MAX_ATTEMPTS).then(|| {
            let wait = RETRY_BASE.saturating_mul(1u32 << (attempts - 1).min(16)).min(RETRY_CAP);
            Utc::now() + chrono::Duration::from_std(wait).expect("an hour at most")
        });
        Err((error, next))
    }

    /// Delivers a task's webhooks, retrying failed ones until none is pending or `wait` has
    /// passed. Returns how many are still pending.
    pub fn flush_task(&self, store: &dyn TaskStore, task_id: &str, wait: Duration) -> Result<usize> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            self.deliver_due(store, Some(task_id))?;
            let Some(next) = store.next_webhook_due(Some(task_id))? else {
                return Ok(0);
            };
            let until_next = (next - Utc::now()).to_std().unwrap_or_default();
            let now = std::time::Instant::now();
            if now + until_next > deadline || self.secret.is_none() {
                let pending = store
                    .webhooks_of(task_id)?
                    .iter()
                    .filter(|d| d.status == outbox::PENDING)
                    .count();
                return Ok(pending);
            }
            std::thread::sleep(until_next.max(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(Secret::parse("whsec_***").is_err());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }
}

//! Retry timing: full-jitter exponential backoff (base 1 s, cap 5 min), honouring `Retry-After`.

use std::time::Duration;

/// The backoff policy of SPEC §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1 = the first retry): a uniformly random
    /// point in `[0, min(cap, base · 2^(attempt-1))]` chosen by `jitter` in `[0, 1)`, but never
    /// less than the server's `retry_after`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        let jittered = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
        match retry_after {
            Some(retry_after) => jittered.max(retry_after),
            None => jittered,
        }
    }
}

/// Bounded retries of one call to an outside service, inside one job's attempt: how many
/// attempts in all, and the backoff between them.
///
/// The one retry policy of orch's adapters. `max_attempts` counts attempts, the first
/// included: 1 means no retry, 3 means the first attempt and two retries.
/// What a `Retry-After` longer than the cap means (wait the cap, or give up and let the job
/// layer wait) is the adapter's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    /// SPEC §4: three attempts, base 1 s, cap 5 min; then the job layer retries.
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            backoff: Backoff::default(),
        }
    }
}

impl RetryPolicy {
    /// Whether another attempt may follow `failed_attempts` failed ones.
    pub fn allows_another(&self, failed_attempts: u32) -> bool {
        failed_attempts < self.max_attempts
    }

    /// The wait before the next attempt, after `failed_attempts` failed ones (at least 1):
    /// `Backoff::delay` with `jitter` in `[0, 1)`.
    pub fn delay(
        &self,
        failed_attempts: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        self.backoff.delay(failed_attempts, retry_after, jitter)
    }

    /// The longest wait `delay` draws after `failed_attempts` failed ones, without a `Retry-After`.
    pub fn ceiling(&self, failed_attempts: u32) -> Duration {
        self.backoff.delay(failed_attempts, None, 1.0)
    }
}

/// A deterministic jitter in `[0, 1)` from a few numbers (splitmix64): the core has no
/// random source, and a job's retries only need to be spread, not secret.
pub fn jitter_from(seed: &[i64]) -> f64 {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for value in seed {
        state ^= *value as u64;
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        state = z ^ (z >> 31);
    }
    (state >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;

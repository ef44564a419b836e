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

//! `SimRng`: the simulation's one source of chance, a splitmix64 stream seeded by a `u64`.

use std::time::Duration;

/// A small deterministic random number generator (splitmix64). The same seed gives the same
/// stream on every machine, which is all a replayable simulation needs.
#[derive(Debug, Clone)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng {
            state: seed ^ 0x5DEE_CE66_D1CE_4E5B,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An independent stream, so one part of the world drawing more numbers does not shift
    /// another part's draws.
    pub fn fork(&mut self) -> SimRng {
        SimRng {
            state: self.next_u64(),
        }
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.next_u64() % n
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A duration uniformly in `[low, high]`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let low_ms = low.as_millis() as u64;
        let high_ms = high.as_millis() as u64;
        Duration::from_millis(low_ms + self.below(high_ms.saturating_sub(low_ms) + 1))
    }

    /// An exponentially distributed duration with `mean` (the time to a Poisson arrival).
    pub fn exp(&mut self, mean: Duration) -> Duration {
        let u = self.unit().max(1e-12);
        mean.mul_f64(-u.ln()).min(mean * 20)
    }

    /// One of `choices`, each as likely as its weight.
    pub fn pick<T: Copy>(&mut self, choices: &[(T, u32)]) -> T {
        let total: u64 = choices.iter().map(|(_, weight)| u64::from(*weight)).sum();
        let mut point = self.below(total);
        for (choice, weight) in choices {
            if point < u64::from(*weight) {
                return *choice;
            }
            point -= u64::from(*weight);
        }
        choices.last().expect("pick needs at least one choice").0
    }
}

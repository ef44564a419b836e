//! `Trace`: what happened in one seed, with simulated times; the tail is printed on failure
//! and a hash of every line proves that a replay is identical.

use std::collections::VecDeque;

use crate::time::Timestamp;

/// The trace of one seed: the last `tail` lines, a hash over all of them, and optionally all.
#[derive(Debug)]
pub(crate) struct Trace {
    start: Timestamp,
    tail: VecDeque<String>,
    capacity: usize,
    hash: u64,
    lines: u64,
    all: Option<Vec<String>>,
}

impl Trace {
    pub(crate) fn new(start: Timestamp, capacity: usize, keep_all: bool) -> Trace {
        Trace {
            start,
            tail: VecDeque::with_capacity(capacity + 1),
            capacity,
            hash: 0xCBF2_9CE4_8422_2325,
            lines: 0,
            all: keep_all.then(Vec::new),
        }
    }

    /// Records `text` as happening at `at`.
    pub(crate) fn push(&mut self, at: Timestamp, text: impl AsRef<str>) {
        let line = format!("{} {}", self.offset(at), text.as_ref());
        for byte in line.bytes().chain(std::iter::once(b'\n')) {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01B3);
        }
        self.lines += 1;
        if let Some(all) = &mut self.all {
            all.push(line.clone());
        }
        self.tail.push_back(line);
        if self.tail.len() > self.capacity {
            self.tail.pop_front();
        }
    }

    /// `+HH:MM:SS.mmm` since the start of the seed.
    pub(crate) fn offset(&self, at: Timestamp) -> String {
        let millis = at.as_millis() - self.start.as_millis();
        let sign = if millis < 0 { "-" } else { "+" };
        let millis = millis.unsigned_abs();
        format!(
            "{sign}{:02}:{:02}:{:02}.{:03}",
            millis / 3_600_000,
            millis / 60_000 % 60,
            millis / 1000 % 60,
            millis % 1000
        )
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    pub(crate) fn lines(&self) -> u64 {
        self.lines
    }

    pub(crate) fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    pub(crate) fn take_all(&mut self) -> Option<Vec<String>> {
        self.all.take()
    }
}

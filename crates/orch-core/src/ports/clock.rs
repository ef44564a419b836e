//! The `Clock` port: the only source of time the core reads.

use crate::time::Timestamp;

/// Tells the time. The core never reads the system clock itself.
pub trait Clock: Send + Sync {
    /// The current time. MUST NOT fail and MUST NOT go backwards by more than the system
    /// clock does.
    fn now(&self) -> Timestamp;
}

//! systemd's service notifications (`Type=notify`, sd_notify(3)) through the `sd-notify`
//! crate: `READY=1` once the daemon serves, `WATCHDOG=1` from the event loop, `STOPPING=1` at
//! shutdown. Without `$NOTIFY_SOCKET` (not under systemd) every call does nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::{debug, warn};

use crate::runtime::{Loop, Observer};

/// Talks to systemd for `orch serve`.
#[derive(Debug)]
pub struct SystemdNotifier {
    /// `WatchdogSec=` as systemd passed it (`$WATCHDOG_USEC`, for this process).
    watchdog: Option<Duration>,
    last_pet: Mutex<Option<Instant>>,
}

impl SystemdNotifier {
    /// Reads `$WATCHDOG_USEC` and `$WATCHDOG_PID` of this process.
    pub fn from_env() -> SystemdNotifier {
        SystemdNotifier {
            watchdog: sd_notify::watchdog_enabled(),
            last_pet: Mutex::new(None),
        }
    }

    /// How often the event loop must show it is alive: half the watchdog timeout, so one late
    /// pet does not get orch killed. `None` without a watchdog.
    pub fn alive_every(&self) -> Option<Duration> {
        self.watchdog.map(|timeout| timeout / 2)
    }

    /// The database is migrated, the loops run and the server listens.
    pub fn ready(&self) {
        send(&[NotifyState::Ready, NotifyState::Status("serving")]);
    }

    /// A `SIGHUP` reload is being applied; `ready` again when it is done.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    /// Shutting down: intake stops and running agents get their grace.
    pub fn stopping(&self) {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Pets the watchdog, at most four times per timeout.
    fn pet(&self) {
        let Some(timeout) = self.watchdog else {
            return;
        };
        let now = Instant::now();
        {
            let mut last = self
                .last_pet
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|last| now.duration_since(last) < timeout / 4) {
                return;
            }
            *last = Some(now);
        }
        send(&[NotifyState::Watchdog]);
    }
}

/// Only the serial event loop pets the watchdog: when it wedges, the pets stop and systemd
/// restarts orch after `WatchdogSec=`.
impl Observer for SystemdNotifier {
    fn loop_alive(&self, which: Loop) {
        if which == Loop::Events {
            self.pet();
        }
    }
}

fn send(states: &[NotifyState<'_>]) {
    match sd_notify::notify(states) {
        Ok(()) => debug!(states = ?states, "systemd notified"),
        Err(err) => warn!(error = %err, "cannot notify systemd"),
    }
}

//! `Daemon::reload` (`SIGHUP`): the adapters rebuilt from the new config, unchanged ones kept,
//! the runtime's services swapped, the webhook secrets replaced, and what needs a restart named.

use std::sync::Arc;

use tracing::{info, warn};

use crate::config::Config;
use crate::runtime::Reconfiguration;
use crate::wiring::adapters::{build_adapters_after, spawn_api_stats};
use crate::wiring::daemon::{expose_all, own_user, Daemon};
use crate::wiring::RunError;

impl Daemon {
    /// Applies a reloaded config (`SIGHUP`): webhook secrets at once (rotation without a
    /// restart); projects, agents, Plane, Gitea, Telegram, rounds and grace for the next
    /// event, job and reconcile pass. The listen address, the database, concurrency, the
    /// reconcile switches, retention and the admin token keep their start-up values until a
    /// restart, and each such change is named in the log.
    pub async fn reload(&self, config: &Config) -> Result<(), RunError> {
        let (previous, previous_user) = {
            let live = self
                .live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (
                (live.config.clone(), live.adapters.clone()),
                live.own_user.clone(),
            )
        };
        let (previous_config, previous_adapters) = previous;
        let mut adapters =
            build_adapters_after(config, self.store.clone(), Some(&previous_adapters.git))?;
        // Unchanged adapters are kept: one call budget for Plane, one lock per git mirror.
        if same_plane(&previous_config, config) {
            adapters.plane = previous_adapters.plane.clone();
            adapters.ports.tracker = previous_adapters.ports.tracker.clone();
        }
        if same_gitea(&previous_config, config) {
            adapters.gitea = previous_adapters.gitea.clone();
            adapters.ports.forge = previous_adapters.ports.forge.clone();
            if config.workspace.repos_dir == previous_config.workspace.repos_dir {
                adapters.ports.workspace = previous_adapters.ports.workspace.clone();
                adapters.git = previous_adapters.git.clone();
            }
        }
        let own_user = own_user(adapters.ports.tracker.as_ref())
            .await
            .or(previous_user);
        self.runtime.reconfigure(Reconfiguration {
            ports: adapters.ports.clone(),
            reconciler_tracker: Some(Arc::new(adapters.plane.half_budget_share())),
            config: config.pipeline(),
            own_user: own_user.clone(),
        });
        {
            let mut live = self
                .live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            live.api_stats.abort();
            live.api_stats = spawn_api_stats(&adapters, config, self.metrics.clone());
            live.config = config.clone();
            live.adapters = adapters;
            live.own_user = own_user;
        }
        self.plane_secrets
            .replace(&expose_all(&config.plane.webhook_secrets));
        self.gitea_secrets
            .replace(&expose_all(&config.gitea.webhook_secrets));
        let started = &self.started_with;
        let token = config
            .server
            .admin_token
            .as_ref()
            .map(|token| token.expose().to_owned());
        let needs_restart = [
            (
                "server.listen",
                config.server.listen != started.server.listen,
            ),
            ("server.admin_token", token != self.admin_token),
            (
                "server.max_body_bytes",
                config.server.max_body_bytes != started.server.max_body_bytes,
            ),
            (
                "storage.db_path",
                config.storage.db_path != started.storage.db_path,
            ),
            (
                "worker.concurrency",
                config.worker.concurrency != started.worker.concurrency,
            ),
            (
                "worker.per_repo_concurrency",
                config.worker.per_repo_concurrency != started.worker.per_repo_concurrency,
            ),
            (
                "reconcile",
                config.reconcile.enabled != started.reconcile.enabled
                    || config.reconcile.plane_enabled != started.reconcile.plane_enabled
                    || config.reconcile.interval != started.reconcile.interval,
            ),
            ("retention", config.retention != started.retention),
        ];
        for (key, changed) in needs_restart {
            if changed {
                warn!(
                    key,
                    "changed in the reloaded config; it takes effect after a restart"
                );
            }
        }
        info!("config reloaded");
        Ok(())
    }
}

/// Whether two configs build the same Plane adapter. The CA file counts by its certificates,
/// not only its path: a private CA renewed in place and a `SIGHUP` must reach the adapter.
fn same_plane(a: &Config, b: &Config) -> bool {
    a.tls.ca_file == b.tls.ca_file
        && a.plane.base_url == b.plane.base_url
        && a.plane.workspace_slug == b.plane.workspace_slug
        && a.plane.api_token.expose() == b.plane.api_token.expose()
        && a.plane.rate_limit_per_min == b.plane.rate_limit_per_min
}

/// Whether two configs build the same Gitea adapters (forge and git workspace, which gives git
/// the CA file's path).
fn same_gitea(a: &Config, b: &Config) -> bool {
    a.tls.ca_file == b.tls.ca_file
        && a.gitea.base_url == b.gitea.base_url
        && a.gitea.token.expose() == b.gitea.token.expose()
        && a.gitea.merge_style == b.gitea.merge_style
}

#[cfg(test)]
mod tests {
    use super::{same_gitea, same_plane};
    use crate::config::tests::{secrets_env, Dir, MINIMAL};
    use crate::config::Config;

    fn parsed(dir: &Dir, tls: &str) -> Config {
        dir.parse(&format!("{MINIMAL}{tls}"), &secrets_env())
            .expect("a valid config")
    }

    #[test]
    fn a_changed_ca_file_rebuilds_the_plane_and_gitea_adapters_on_reload() {
        let dir = Dir::new();
        let ca_file = dir.path().join("company-ca.pem");
        let tls = "\n[tls]\nca_file = \"company-ca.pem\"\n";
        let without = parsed(&dir, "");
        assert!(same_plane(&without, &parsed(&dir, "")));
        assert!(same_gitea(&without, &parsed(&dir, "")));

        let first_ca = orch_sim::tls::TestCa::new().expect("a test CA");
        std::fs::write(&ca_file, first_ca.ca_pem()).expect("ca file");
        let with_first = parsed(&dir, tls);
        assert!(!same_plane(&without, &with_first), "a CA file added");
        assert!(!same_gitea(&without, &with_first), "a CA file added");
        assert!(same_plane(&with_first, &parsed(&dir, tls)));
        assert!(same_gitea(&with_first, &parsed(&dir, tls)));

        // The same path, renewed in place.
        let second_ca = orch_sim::tls::TestCa::new().expect("a test CA");
        std::fs::write(&ca_file, second_ca.ca_pem()).expect("ca file");
        let with_second = parsed(&dir, tls);
        assert!(!same_plane(&with_first, &with_second), "the CA renewed");
        assert!(!same_gitea(&with_first, &with_second), "the CA renewed");
    }
}

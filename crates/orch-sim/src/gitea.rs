//! `GiteaSim`: Gitea API v1, git hosting, a CI and the webhook sender.

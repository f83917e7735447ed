//! Destroying an app, which only the build service can do safely: it holds the app's claim
//! (no deploy can be running or start meanwhile), has the supervisor stop the instances,
//! removes the rows, then everything on disk the app owned. Must not decide anything about
//! the instances themselves.

use super::{Builds, DeployError};

impl Builds {
    /// Destroys an app: its instances drain and stop, its rows go (the router forgets its
    /// hosts before that returns), then its slugs, build cache, git repo and log stream.
    /// Refused while a deploy of it runs.
    pub async fn destroy_app(&self, app: String) -> Result<(), DeployError> {
        self.inner.apps.info(app.clone()).await?;
        let _claim = self.inner.locks.claim(&app, "destroy")?;
        self.inner.supervisor.stop_app(&app).await;
        self.inner.apps.destroy(app.clone()).await?;
        self.forget(&app).await;
        self.inner.logs.remove_app(&app).await;
        Ok(())
    }

    /// Removes an app's slugs, build cache and git repo (the app was destroyed), on a
    /// blocking thread: a big tree takes a while to delete.
    async fn forget(&self, app: &str) {
        let slugs = self.inner.slugs.clone();
        let paths = self.inner.paths.clone();
        let app = app.to_string();
        let done = tokio::task::spawn_blocking(move || {
            slugs.remove_app(&app);
            crate::git::repos::remove(&crate::git::repos::path(&paths.root, &app));
            let cache = paths.cache(&app);
            super::remove_tree(&cache, "a build cache");
            if let Err(e) = std::fs::remove_file(cache.with_extension("img")) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(error = %e, "could not remove a build cache image");
                }
            }
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "removing an app's files failed");
        }
    }
}

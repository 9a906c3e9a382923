//! Certificate hot reload: the certificate, key and client CA files are re-read every
//! `[reload] interval` (polling, like the config file, so a Kubernetes Secret update — a
//! symlink swap in the mounted directory — is seen). When any of them changed, the server
//! settings are rebuilt from what was read and swapped in whole for new connections;
//! established connections keep their session. A set that does not load (a half-written
//! pair, a key that is not the certificate's) keeps the running settings, is logged and
//! counted in `scopegate_tls_reloads_total{result="rejected"}`, and is tried again as soon
//! as any file changes again.

use std::sync::Arc;
use std::time::Duration;

use super::acceptor::TlsTermination;
use super::config::{TlsContents, TlsFiles};
use crate::metrics::Metrics;

/// Watches `files` until the task is aborted; `loaded` is what the running settings were
/// built from.
pub async fn watch_certificates(
    termination: Arc<TlsTermination>,
    files: TlsFiles,
    mut loaded: TlsContents,
    interval: Duration,
    metrics: Metrics,
) {
    let mut unreadable = None;
    loop {
        tokio::time::sleep(interval).await;
        let contents = match files.read() {
            Ok(contents) => contents,
            // A file being replaced can be missing for a moment: look again next time, and
            // say so once per distinct problem rather than every interval.
            Err(e) => {
                if unreadable.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "TLS files not readable; keeping the running certificate");
                    unreadable = Some(e);
                }
                continue;
            }
        };
        unreadable = None;
        if contents == loaded {
            continue;
        }
        match files.server_config(&contents) {
            Ok(config) => {
                termination.replace(config);
                metrics.tls_reloads.with_label_values(&["success"]).inc();
                tracing::info!(cert_file = %files.cert_file.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                metrics.tls_reloads.with_label_values(&["rejected"]).inc();
                tracing::error!(error = %e, "TLS certificate reload rejected; keeping the running certificate");
            }
        }
        loaded = contents;
    }
}

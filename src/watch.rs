//! Watching a directory for changes to some of its files, debounced: a burst of events (an
//! editor's write-then-rename, a `cp` of several files, a Kubernetes ConfigMap swap) is one
//! reload, not several. The rules directory ([`crate::rules::watch`]) and the settings file
//! ([`crate::topology`]'s node lists) are watched this way.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Quiet time after the last change before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Longest a reload waits behind a stream of changes that never goes quiet.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Calls `reload` after each burst of changes in `dir` to a file for which `relevant`
/// holds (or that the watcher could not describe), until `shutdown`; tells `ready` once
/// the directory is watched. `what` names the watched thing in log lines. If the watcher
/// cannot be set up, logs a warning and returns at once (`SIGHUP` still reloads).
pub async fn on_changes<P, F, R>(
    dir: &Path,
    what: &'static str,
    relevant: P,
    shutdown: CancellationToken,
    ready: Option<oneshot::Sender<()>>,
    mut reload: F,
) where
    P: Fn(&Path) -> bool + Send + 'static,
    F: FnMut() -> R,
    R: Future<Output = ()>,
{
    // The notify callback runs on the watcher's own thread. A channel of one slot
    // coalesces bursts: while a reload is pending, further events add nothing.
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let handler = move |event: notify::Result<Event>| {
        if let Err(e) = &event {
            warn!(error = %e, what, "watch error; reloading to be safe");
        }
        if is_relevant(&event, &relevant) {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, what, "cannot watch for changes; SIGHUP still reloads");
            return;
        }
    };
    if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
        warn!(error = %e, what, dir = %dir.display(), "cannot watch for changes; SIGHUP still reloads");
        return;
    }
    debug!(what, dir = %dir.display(), "watching for changes");
    if let Some(ready) = ready {
        let _ = ready.send(());
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            event = rx.recv() => {
                if event.is_none() {
                    warn!(what, "the watcher stopped; SIGHUP still reloads");
                    break;
                }
            }
        }
        if !settle(&mut rx, &shutdown).await {
            break;
        }
        reload().await;
    }
    drop(watcher);
}

/// Waits until no change arrived for [`DEBOUNCE`] (at most [`MAX_DELAY`]); false if the
/// watch must end.
async fn settle(rx: &mut mpsc::Receiver<()>, shutdown: &CancellationToken) -> bool {
    let latest = Instant::now() + MAX_DELAY;
    loop {
        let quiet = (Instant::now() + DEBOUNCE).min(latest);
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep_until(quiet) => return true,
            event = rx.recv() => {
                if event.is_none() {
                    return false;
                }
            }
        }
    }
}

/// Whether a watcher event may matter: a change to a path `relevant` accepts, a
/// Kubernetes ConfigMap swap (`..data`), or anything the watcher could not describe.
fn is_relevant(event: &notify::Result<Event>, relevant: impl Fn(&Path) -> bool) -> bool {
    let Ok(event) = event else {
        return true;
    };
    if event.need_rescan() {
        return true;
    }
    match event.kind {
        EventKind::Access(_) => false,
        _ => event
            .paths
            .iter()
            .any(|p| relevant(p) || is_configmap_swap(p)),
    }
}

/// Whether `path` is a ConfigMap-style `..` entry (Kubernetes swaps a mounted ConfigMap by
/// renaming `..data`).
fn is_configmap_swap(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.as_encoded_bytes().starts_with(b".."))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use notify::event::{AccessKind, CreateKind, ModifyKind, RemoveKind, RenameMode};

    use super::*;

    fn toml(path: &Path) -> bool {
        path.extension().is_some_and(|e| e == "toml")
    }

    #[test]
    fn relevant_files_configmap_swaps_and_unknown_events_count_accesses_do_not() {
        let event =
            |kind: EventKind, path: &str| Ok(Event::new(kind).add_path(PathBuf::from(path)));
        let create = EventKind::Create(CreateKind::File);
        assert!(is_relevant(&event(create, "/r/acme.toml"), toml));
        assert!(is_relevant(
            &event(EventKind::Remove(RemoveKind::File), "/r/acme.toml"),
            toml
        ));
        assert!(is_relevant(
            &event(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/r/acme.toml"
            ),
            toml
        ));
        assert!(is_relevant(&event(create, "/r/..data"), toml));
        assert!(!is_relevant(
            &event(EventKind::Access(AccessKind::Any), "/r/acme.toml"),
            toml
        ));
        assert!(!is_relevant(&event(create, "/r/4913"), toml));
        assert!(is_relevant(
            &Err(notify::Error::generic("queue overflow")),
            toml
        ));
    }
}

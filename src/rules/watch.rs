//! Hot reload: the current [`RuleSet`], swapped atomically when the rules directory
//! changes (file watch) or on request (`SIGHUP`).
//!
//! A reload compiles the whole directory; only a fully valid directory replaces the
//! rules in force. A broken file keeps the previous rules, costs one error log line with
//! the precise `file:line: key: message`, and is counted ([`RulesStore::failures`],
//! [`RulesStore::last_error`]) so readiness and metrics can show it; loads that worked
//! are counted too ([`RulesStore::reloads`]). Requests hold the
//! `Arc<RuleSet>` they loaded, so requests in flight finish on the rules they started with.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::RuleSet;
use crate::config::{ConfigError, PoolConfig};

/// The rules in force and how to replace them.
///
/// Shared (`Arc`) by the router (reads [`RulesStore::current`] per request), the
/// discovery merge (rebuilds on [`RulesStore::subscribe`]), the `SIGHUP` handler (calls
/// [`RulesStore::reload`]) and the watcher task ([`RulesStore::watch`]).
#[derive(Debug)]
pub struct RulesStore {
    /// The rules directory.
    dir: PathBuf,
    /// Pools the rules are checked against (the settings are not reloaded).
    pools: Vec<PoolConfig>,
    /// Rules in force.
    current: ArcSwap<RuleSet>,
    /// Successful loads since start, the start-up load included.
    reloads: AtomicU64,
    /// Failed reloads since start.
    failures: AtomicU64,
    /// Message of the last failed reload, cleared by a successful one.
    last_error: Mutex<Option<String>>,
    /// Generation, bumped after each successful swap.
    generation: watch::Sender<u64>,
    /// Serialises reloads, so a slow one never swaps in older files over a newer one.
    reloading: Mutex<()>,
}

impl RulesStore {
    /// A store serving `initial` (compiled at startup from `dir` against `pools`): that
    /// load counts as the first successful one.
    pub fn new(dir: PathBuf, pools: Vec<PoolConfig>, initial: RuleSet) -> Arc<RulesStore> {
        let (generation, _) = watch::channel(0);
        Arc::new(RulesStore {
            dir,
            pools,
            current: ArcSwap::from_pointee(initial),
            reloads: AtomicU64::new(1),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
            generation,
            reloading: Mutex::new(()),
        })
    }

    /// The rules in force. A request keeps the `Arc` it loaded, so a reload never
    /// changes the rules under a request in flight.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    /// Compiles the whole rules directory and, if it is valid, puts it in force.
    ///
    /// On success: swaps atomically, logs the organisation count, bumps the generation
    /// ([`RulesStore::subscribe`]) and clears [`RulesStore::last_error`]. On failure: the
    /// previous rules stay in force, one error line is logged, the failure is counted and
    /// its message kept. Blocking (reads files): call it from a blocking context.
    ///
    /// # Errors
    /// The located error that made the directory invalid.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let _serial = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match RuleSet::load(&self.dir, &self.pools) {
            Ok(rules) => {
                let organisations = rules.organisations();
                self.current.store(Arc::new(rules));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                *self.lock_last_error() = None;
                let mut generation = 0;
                self.generation.send_modify(|g| {
                    *g += 1;
                    generation = *g;
                });
                info!(
                    organisations,
                    generation,
                    dir = %self.dir.display(),
                    "rules reloaded"
                );
                Ok(())
            }
            Err(err) => {
                *self.lock_last_error() = Some(err.to_string());
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                error!(
                    error = %err,
                    failures,
                    "rules reload failed; the previous rules stay in force"
                );
                Err(err)
            }
        }
    }

    /// Successful loads since start, the start-up load included (for metrics).
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Failed reloads since start (for metrics and readiness).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The message of the last failed reload, `None` once a reload succeeds; tells an
    /// operator why their edit is not in force.
    pub fn last_error(&self) -> Option<String> {
        self.lock_last_error().clone()
    }

    /// The rules generation: 0 at start, bumped after each successful reload. The
    /// discovery merge rebuilds when it changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Watches the rules directory and reloads after changes to its `*.toml` files
    /// (created, modified, removed or renamed), debounced so one save is one reload.
    /// Returns on `shutdown`. If the watcher cannot be set up, logs a warning and
    /// returns at once: `SIGHUP` still reloads.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        self.watch_until(shutdown, None).await;
    }

    /// [`RulesStore::watch`], telling `ready` once the directory is being watched.
    async fn watch_until(
        self: Arc<Self>,
        shutdown: CancellationToken,
        ready: Option<oneshot::Sender<()>>,
    ) {
        let dir = self.dir.clone();
        crate::watch::on_changes(
            &dir,
            "rules directory",
            is_rules_file,
            shutdown,
            ready,
            || {
                let store = Arc::clone(&self);
                async move {
                    if let Err(e) = tokio::task::spawn_blocking(move || store.reload()).await {
                        error!(error = %e, "rules reload task failed");
                    }
                }
            },
        )
        .await;
    }

    fn lock_last_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `path` is a rules file (`*.toml`, not hidden).
fn is_rules_file(path: &Path) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    name.as_encoded_bytes().first() != Some(&b'.') && path.extension().is_some_and(|e| e == "toml")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::SuiteKind;
    use url::Url;

    fn pools() -> Vec<PoolConfig> {
        ["collabora", "onlyoffice"]
            .iter()
            .map(|n| PoolConfig {
                name: n.to_string(),
                kind: if *n == "collabora" {
                    SuiteKind::Collabora
                } else {
                    SuiteKind::OnlyOffice
                },
                nodes: vec![Url::parse("http://127.0.0.1:9980/").unwrap()],
                proof: Default::default(),
            })
            .collect()
    }

    const DEFAULT: &str = "[extensions]\ndocx = \"onlyoffice\"\n";

    /// A rules dir with `default.toml` and `acme.toml` giving acme's docx to `pool`.
    fn rules_dir(pool: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("default.toml"), DEFAULT).unwrap();
        write_acme(dir.path(), pool);
        dir
    }

    fn write_acme(dir: &Path, pool: &str) {
        let text =
            format!("origins = [\"https://acme.example\"]\n[extensions]\ndocx = \"{pool}\"\n");
        std::fs::write(dir.join("acme.toml"), text).unwrap();
    }

    fn store(dir: &Path) -> Arc<RulesStore> {
        let initial = RuleSet::load(dir, &pools()).unwrap();
        RulesStore::new(dir.to_path_buf(), pools(), initial)
    }

    /// acme's pool for docx under `rules`.
    fn acme_docx(rules: &RuleSet) -> Option<String> {
        let url = Url::parse("https://acme.example/wopi/files/1").unwrap();
        let org = rules.organisation_for(&url)?;
        rules.pool_for(org, "docx").map(str::to_string)
    }

    /// Polls `cond` for up to 5 s.
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..100 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not within 5 s: {what}");
    }

    /// Starts the watcher and waits until it watches.
    async fn start_watch(
        store: &Arc<RulesStore>,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let shutdown = CancellationToken::new();
        let (ready, watching) = oneshot::channel();
        let task = tokio::spawn(Arc::clone(store).watch_until(shutdown.clone(), Some(ready)));
        tokio::time::timeout(Duration::from_secs(5), watching)
            .await
            .expect("watcher ready in time")
            .expect("watcher started");
        (shutdown, task)
    }

    #[test]
    fn reload_swaps_and_bumps_the_generation() {
        let dir = rules_dir("onlyoffice");
        let store = store(dir.path());
        let generation = store.subscribe();
        let before = store.current();
        assert_eq!(acme_docx(&before).as_deref(), Some("onlyoffice"));
        assert_eq!(*generation.borrow(), 0);

        write_acme(dir.path(), "collabora");
        store.reload().unwrap();
        assert_eq!(acme_docx(&store.current()).as_deref(), Some("collabora"));
        assert_eq!(*generation.borrow(), 1);
        // A request that loaded the rules before the reload keeps seeing them.
        assert_eq!(acme_docx(&before).as_deref(), Some("onlyoffice"));

        std::fs::write(
            dir.path().join("beta.toml"),
            "origins = [\"https://beta.example\"]\n",
        )
        .unwrap();
        store.reload().unwrap();
        assert_eq!(store.current().organisations(), 2);
        assert_eq!(*generation.borrow(), 2);
        assert_eq!((store.failures(), store.last_error()), (0, None));
        // The start-up load and both reloads.
        assert_eq!(store.reloads(), 3);
    }

    #[test]
    fn a_broken_file_keeps_the_old_rules_and_counts() {
        let dir = rules_dir("onlyoffice");
        let store = store(dir.path());
        let generation = store.subscribe();
        std::fs::write(
            dir.path().join("acme.toml"),
            "origins = [\"https://acme.example\"]\n[extensions]\ndocx = \"msoffice\"\n",
        )
        .unwrap();
        let err = store.reload().unwrap_err();
        assert_eq!((err.key.as_str(), err.line), ("extensions.docx", Some(3)));
        assert_eq!(acme_docx(&store.current()).as_deref(), Some("onlyoffice"));
        assert_eq!(*generation.borrow(), 0);
        assert_eq!((store.reloads(), store.failures()), (1, 1));
        let message = store.last_error().unwrap();
        assert!(
            message.ends_with("acme.toml:3: extensions.docx: no pool named `msoffice` (pools: collabora, onlyoffice)"),
            "{message}"
        );

        std::fs::write(dir.path().join("default.toml"), "prefer = [").unwrap();
        assert!(store.reload().is_err());
        assert_eq!(store.failures(), 2);
        assert!(store.last_error().unwrap().contains("default.toml:1"));

        std::fs::write(dir.path().join("default.toml"), DEFAULT).unwrap();
        write_acme(dir.path(), "collabora");
        store.reload().unwrap();
        assert_eq!(acme_docx(&store.current()).as_deref(), Some("collabora"));
        assert_eq!((store.failures(), store.last_error()), (2, None));
        assert_eq!(store.reloads(), 2);
        assert_eq!(*generation.borrow(), 1);
    }

    #[tokio::test]
    async fn the_watcher_reloads_on_change_and_keeps_rules_on_a_broken_write() {
        let dir = rules_dir("onlyoffice");
        let store = store(dir.path());
        let (shutdown, task) = start_watch(&store).await;

        write_acme(dir.path(), "collabora");
        eventually("the edit is in force", || {
            acme_docx(&store.current()).as_deref() == Some("collabora")
        })
        .await;
        let generation = *store.subscribe().borrow();

        std::fs::write(
            dir.path().join("acme.toml"),
            "origins = [\"https://acme.example/x\"]\n",
        )
        .unwrap();
        eventually("the broken write is counted", || store.failures() == 1).await;
        assert_eq!(acme_docx(&store.current()).as_deref(), Some("collabora"));
        assert_eq!(*store.subscribe().borrow(), generation);
        assert!(
            store
                .last_error()
                .unwrap()
                .contains("acme.toml:1: origins[0]")
        );

        // Removing the broken organisation makes the directory valid again.
        std::fs::remove_file(dir.path().join("acme.toml")).unwrap();
        eventually("the removal is in force", || {
            store.current().organisations() == 0
        })
        .await;
        assert_eq!(store.last_error(), None);

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("watch ends on shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn an_editor_save_is_one_reload() {
        let dir = rules_dir("onlyoffice");
        let store = store(dir.path());
        let mut generation = store.subscribe();
        let (shutdown, task) = start_watch(&store).await;

        // Save as temp file, then rename over the original; plus a second file in the
        // same burst. Ignored names (hidden, not *.toml) alone trigger nothing.
        let tmp = dir.path().join(".acme.toml.tmp");
        std::fs::write(
            &tmp,
            "origins = [\"https://acme.example\"]\nall = \"collabora\"\n",
        )
        .unwrap();
        std::fs::rename(&tmp, dir.path().join("acme.toml")).unwrap();
        std::fs::write(
            dir.path().join("beta.toml"),
            "origins = [\"https://beta.example\"]\n",
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), generation.changed())
            .await
            .expect("reloaded in time")
            .unwrap();
        assert_eq!(*generation.borrow_and_update(), 1);
        let rules = store.current();
        assert_eq!(rules.organisations(), 2);
        assert_eq!(acme_docx(&rules).as_deref(), Some("collabora"));

        // Nothing else is pending: no second reload follows the burst.
        std::fs::write(dir.path().join("notes.txt"), "not rules").unwrap();
        let second = tokio::time::timeout(crate::watch::DEBOUNCE * 3, generation.changed()).await;
        assert!(second.is_err(), "a second reload happened");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("watch ends on shutdown")
            .unwrap();
    }

    /// Kubernetes mounts a ConfigMap as `name -> ..data/name` symlinks and updates it by
    /// renaming a new `..data` symlink into place: no `*.toml` event at all.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_configmap_swap_is_a_reload() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let version = |name: &str, pool: &str| {
            let v = dir.path().join(name);
            std::fs::create_dir(&v).unwrap();
            std::fs::write(v.join("default.toml"), DEFAULT).unwrap();
            write_acme(&v, pool);
        };
        version("..2026_01", "onlyoffice");
        symlink("..2026_01", dir.path().join("..data")).unwrap();
        for file in ["default.toml", "acme.toml"] {
            symlink(format!("..data/{file}"), dir.path().join(file)).unwrap();
        }
        let store = store(dir.path());
        assert_eq!(acme_docx(&store.current()).as_deref(), Some("onlyoffice"));
        let (shutdown, task) = start_watch(&store).await;

        version("..2026_02", "collabora");
        symlink("..2026_02", dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        eventually("the new ConfigMap version is in force", || {
            acme_docx(&store.current()).as_deref() == Some("collabora")
        })
        .await;

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("watch ends on shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn an_unwatchable_directory_returns_at_once() {
        let dir = rules_dir("onlyoffice");
        let initial = RuleSet::load(dir.path(), &pools()).unwrap();
        let store = RulesStore::new(dir.path().join("absent"), pools(), initial);
        tokio::time::timeout(
            Duration::from_secs(5),
            store.watch(CancellationToken::new()),
        )
        .await
        .expect("watch returns when it cannot watch");
    }

    #[test]
    fn only_rules_files_are_relevant() {
        for yes in ["/r/acme.toml", "/r/default.toml"] {
            assert!(is_rules_file(Path::new(yes)), "{yes}");
        }
        for no in [
            "/r/.acme.toml.swp",
            "/r/.#acme.toml",
            "/r/example-org.toml.sample",
            "/r/4913",
        ] {
            assert!(!is_rules_file(Path::new(no)), "{no}");
        }
    }
}

//! Carrying the memory store's pins over a restart: officeswitch restarts (to add a node to
//! its settings, to upgrade) while editors keep their documents open, and a document that
//! lost its pin could be hashed onto the new node, splitting its editing session.
//!
//! The pins are written to `{state_dir}/pins.json` (write to a temporary file, then rename)
//! every [`SAVE_EVERY`] and when officeswitch stops, and read back at start. Redis keeps its
//! pins itself, so for it there is nothing to write.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::store::{Pin, PinStore};

/// How often the pins are saved while running (bounds what a crash loses).
pub const SAVE_EVERY: Duration = Duration::from_secs(30);

/// One saved pin.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    key: String,
    pool: String,
    node: String,
    /// Remaining life when saved, in milliseconds.
    ttl_ms: u64,
}

/// The file pins are kept in.
pub fn file(state_dir: &Path) -> PathBuf {
    state_dir.join("pins.json")
}

/// Writes the store's live pins to `path` (nothing for a store that keeps its own).
///
/// # Errors
/// The I/O error, for the caller's one log line.
pub fn save(store: &dyn PinStore, path: &Path) -> io::Result<usize> {
    let pins = store.export();
    if pins.is_empty() && !path.exists() {
        return Ok(0);
    }
    let saved: Vec<Saved> = pins
        .into_iter()
        .map(|(key, pin, life)| Saved {
            key,
            pool: pin.pool,
            node: pin.node,
            ttl_ms: u64::try_from(life.as_millis()).unwrap_or(u64::MAX),
        })
        .collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&saved).map_err(io::Error::other)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(saved.len())
}

/// Reads pins saved by [`save`] into `store`; a missing file is no pins, a broken one is
/// logged and ignored (documents are then re-pinned as they come).
pub fn load(store: &dyn PinStore, path: &Path) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read saved pins; starting without them");
            return;
        }
    };
    let saved: Vec<Saved> = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "saved pins are unreadable; starting without them");
            return;
        }
    };
    let count = saved.len();
    store.import(
        saved
            .into_iter()
            .map(|s| {
                (
                    s.key,
                    Pin::new(&s.pool, &s.node),
                    Duration::from_millis(s.ttl_ms),
                )
            })
            .collect(),
    );
    if count > 0 {
        info!(path = %path.display(), pins = count, "carried pins over the restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sticky::store::memory::MemoryStore;

    #[tokio::test]
    async fn pins_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path());
        let before = MemoryStore::new();
        let pin = Pin::new("collabora", "http://n1:9980/");
        before
            .create(
                "ABCDEFGHabcdefgh0123456789_-abcd",
                &pin,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(save(&before, &path).unwrap(), 1);
        let after = MemoryStore::new();
        load(&after, &path);
        let got = after
            .get("ABCDEFGHabcdefgh0123456789_-abcd", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(got, Some(pin));
        // A broken file is no pins, not a failure.
        std::fs::write(&path, b"{").unwrap();
        load(&MemoryStore::new(), &path);
    }
}

//! Last-known-good discovery of each pool, kept on disk so a restart survives an editor outage.
//!
//! One JSON file per pool in `{state_dir}/discovery/`, replaced atomically (write to a
//! temporary file, then rename) so a crash never leaves half a file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What is saved for one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPool {
    /// Node that served it.
    pub node: String,
    /// When it was fetched, seconds since the Unix epoch.
    pub fetched_at_unix: u64,
    /// The discovery XML exactly as the node served it.
    pub discovery: String,
    /// The node's capabilities object, if it served a valid one.
    pub capabilities: Option<Map<String, Value>>,
}

/// Directory of the saved discoveries inside the state dir.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("discovery")
}

fn file(state_dir: &Path, pool: &str) -> PathBuf {
    dir(state_dir).join(format!("{pool}.json"))
}

/// Saves `saved` as the last good discovery of `pool`.
///
/// # Errors
/// Any I/O error creating the directory, writing or renaming.
pub async fn save(state_dir: &Path, pool: &str, saved: &SavedPool) -> std::io::Result<()> {
    let target = file(state_dir, pool);
    tokio::fs::create_dir_all(dir(state_dir)).await?;
    let tmp = target.with_extension("json.tmp");
    let body = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
    tokio::fs::write(&tmp, body).await?;
    tokio::fs::rename(&tmp, &target).await
}

/// Loads the last good discovery of `pool`; `Ok(None)` when none was ever saved.
///
/// # Errors
/// A message naming the file when it exists but cannot be read or decoded.
pub async fn load(state_dir: &Path, pool: &str) -> Result<Option<SavedPool>, String> {
    let path = file(state_dir, pool);
    match tokio::fs::read(&path).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn save_then_load_round_trips_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "collabora").await, Ok(None));
        let saved = SavedPool {
            node: "http://127.0.0.1:9980/".into(),
            fetched_at_unix: 1,
            discovery: "<wopi-discovery/>".into(),
            capabilities: None,
        };
        save(dir.path(), "collabora", &saved).await.unwrap();
        assert_eq!(load(dir.path(), "collabora").await, Ok(Some(saved)));
    }

    #[tokio::test]
    async fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        tokio::fs::create_dir_all(super::dir(dir.path()))
            .await
            .unwrap();
        tokio::fs::write(file(dir.path(), "x"), b"{").await.unwrap();
        let err = load(dir.path(), "x").await.unwrap_err();
        assert!(err.contains("x.json"), "{err}");
    }
}

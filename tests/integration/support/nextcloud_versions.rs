//! richdocuments' old versions and outside changes on the stand-in Nextcloud (a child
//! module of `nextcloud.rs`, so it shares its state), modelled on nextcloud/richdocuments
//! at 2ecfdd49 (`lib/Helper.php` `parseFileId`, `lib/Controller/WopiController.php`):
//!
//! - A file id is `<fileid>_<instanceid>[_<version>]`; a version other than `0` names an
//!   old version of the file. The token is the file's: richdocuments reads the version from
//!   the URL only ([`split`]).
//! - CheckFileInfo of a version: `Version` is the version, `Size` the version's,
//!   `SupportsRename`, `UserCanRename` and `EnableShare` false, and **`UserCanWrite` as the
//!   token says** (true for an editor): richdocuments makes the view read-only only by
//!   `&permission=readonly` in the editor's URL ([`version_fields`]).
//! - GetFile of a version: the version's bytes.
//! - PutFile (and every `POST`) of a version: **the current file**, since `putFile` and
//!   `postFile` drop the version part of the id.
//! - [`StandInNextcloud::change_in_storage`]: the file changes in Nextcloud itself (an
//!   upload in Files, a sync client), so its `LastModifiedTime` moves on and a save sent
//!   with the old one gets richdocuments' 409 `{"COOLStatusCode":1010}`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::Value;

use super::{Content, StandInNextcloud};

/// Old versions by file id (`<fileid>_<instanceid>`), then version.
#[derive(Default)]
pub(super) struct Store {
    versions: HashMap<String, BTreeMap<String, Bytes>>,
}

impl Store {
    /// The bytes of `version` of `file_id`.
    pub(super) fn get(&self, file_id: &str, version: &str) -> Option<Bytes> {
        self.versions.get(file_id)?.get(version).cloned()
    }
}

/// `Helper::parseFileId`: the file's id (`<fileid>_<instanceid>`) and the version, when
/// the id names one other than `0`.
pub(super) fn split(file_id: &str) -> (&str, Option<&str>) {
    let parts: Vec<&str> = file_id.split('_').collect();
    match parts.as_slice() {
        [_, _, version] if *version != "0" => {
            let end = file_id.len() - version.len() - 1;
            (&file_id[..end], Some(version))
        }
        [_, _, _] => (&file_id[..file_id.len() - 2], None),
        _ => (file_id, None),
    }
}

/// The fields richdocuments' `checkFileInfo` sets differently for a version: `Version`
/// (the version), `Size` (the version's), no rename, no share.
pub(super) fn version_fields(info: &mut Value, version: &str, size: u64) {
    info["Version"] = version.into();
    info["Size"] = size.into();
    info["SupportsRename"] = false.into();
    info["UserCanRename"] = false.into();
    info["EnableShare"] = false.into();
}

impl StandInNextcloud {
    /// Adds old version `version` (a string of digits, as Nextcloud's version ids are
    /// timestamps) of `file_id` with these bytes: `<file_id>_<version>` opens it.
    pub fn add_version(&self, file_id: &str, version: &str, bytes: Vec<u8>) {
        self.host()
            .versions
            .versions
            .entry(file_id.to_owned())
            .or_default()
            .insert(version.to_owned(), Bytes::from(bytes));
    }

    /// The file changes in Nextcloud itself, not through an editor: new bytes, the version
    /// counter moves on, and the modification time becomes at least a second later than it
    /// was, so `LastModifiedTime` (whole seconds) differs from what editors saw.
    pub fn change_in_storage(&self, file_id: &str, bytes: Vec<u8>) {
        let mut host = self.host();
        let file = host
            .files
            .get_mut(file_id)
            .unwrap_or_else(|| panic!("no file {file_id}"));
        file.modified = SystemTime::now().max(file.modified + Duration::from_secs(1));
        file.content = Content::Bytes(Bytes::from(bytes));
        file.version += 1;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_ids_split_as_richdocuments_parses_them() {
        let split = super::split;
        assert_eq!(split("42_ocabc"), ("42_ocabc", None));
        assert_eq!(split("42_ocabc_0"), ("42_ocabc", None));
        assert_eq!(
            split("42_ocabc_1700000000"),
            ("42_ocabc", Some("1700000000"))
        );
        assert_eq!(split("42"), ("42", None));
    }
}

//! The dialect: what officeswitch changes between richdocuments and ONLYOFFICE Docs.
//!
//! richdocuments (Nextcloud Office) speaks WOPI the way Collabora Online does, extensions
//! included. ONLYOFFICE Docs in WOPI mode reads the standard and some of those
//! extensions, so documents open, edit and save, but several things richdocuments says
//! reach ONLYOFFICE in a form it does not read, and some of what ONLYOFFICE sends means
//! something else to richdocuments (`../shared/notes/richdocuments-onlyoffice.md` has the
//! sources). officeswitch sees both sides of every call, so it is the one place that can
//! adapt them. Everything it adapts is a row of one of the tables below, with the reason
//! next to it; a reader (or docs/wopi.md's table) need look nowhere else:
//!
//! - [`CHECK_FILE_INFO`]: CheckFileInfo fields derived from the ones richdocuments sends;
//! - [`CALLS`]: calls officeswitch answers itself instead of passing them on, because
//!   passing them on would lose data;
//! - [`REQUEST_HEADERS`]: request headers copied under the name richdocuments reads;
//! - [`STALE_SAVE`]: an out-of-date save becomes a new file ([`super::conflict`]) instead
//!   of a refusal ONLYOFFICE would later undo;
//! - [`CONFLICT`]: how richdocuments' refusal of an out-of-date save reaches ONLYOFFICE;
//! - [`MESSAGES_TO_HOST`] and [`FRAME_READY`]: the postMessages the pool's
//!   [`super::bridge`] page renames or adds between ONLYOFFICE's page and Nextcloud's.
//!
//! Collabora pools get [`Dialect::Native`]: richdocuments is written for Collabora, so
//! its calls and answers pass exactly as they are (apart from the URLs
//! [`super::translate`] rewrites for every pool).
//!
//! What a call may do is known without any shared state: a read-only open is sealed in
//! officeswitch's token ([`Grant::read_only`], from the open's `permission=readonly`), and
//! an old version is recognised from the host's `WOPISrc` the token carries
//! ([`is_version`]); see [`Access`].

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{Map, Value};
use url::Url;

use super::answer::Answer;
use super::classify::{WopiCall, WopiEndpoint, query_param};
use crate::config::SuiteKind;
use crate::wopi::token::Grant;

/// How officeswitch talks to a pool's editors on richdocuments' behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// richdocuments' own, which Collabora speaks: nothing is adapted.
    Native,
    /// ONLYOFFICE Docs in WOPI mode: the tables of this module apply.
    OnlyOffice,
}

impl Dialect {
    /// The dialect of a pool of `suite`. A grant whose pool is no longer configured
    /// (`None`) gets [`Dialect::Native`]: officeswitch cannot tell what it talks to.
    pub fn of(suite: Option<SuiteKind>) -> Dialect {
        match suite {
            Some(SuiteKind::OnlyOffice) => Dialect::OnlyOffice,
            Some(SuiteKind::Collabora) | None => Dialect::Native,
        }
    }

    /// Whether the pool's editor page is opened inside officeswitch's
    /// [`super::bridge`] page, which speaks richdocuments' postMessages for it.
    pub fn bridged(self) -> bool {
        self == Dialect::OnlyOffice
    }

    /// Classifies an admitted call and refuses it when a row of [`CALLS`] says so, before
    /// anything reaches the host; the [`Exchange`] then adapts the request and the answer.
    ///
    /// # Errors
    /// The refusal of the first matching row of [`CALLS`].
    pub fn exchange<B>(
        self,
        call: &WopiCall<'_>,
        request: &Request<B>,
        grant: &Grant,
    ) -> Result<Exchange, Answer> {
        let operation = Operation::of(call, request.method(), request.headers());
        let access = Access::of(grant);
        if self == Dialect::OnlyOffice
            && let Some(rule) = CALLS
                .iter()
                .find(|rule| rule.calls.contains(&operation) && rule.when.holds(access))
        {
            crate::metrics::global().rejection("dialect", rule.refusal.reason());
            return Err(rule.refusal.answer());
        }
        Ok(Exchange {
            dialect: self,
            operation,
            access,
            lock: request.headers().get("x-wopi-lock").cloned(),
        })
    }
}

/// One admitted call on its way through the dialect: what it is, what its token allows,
/// and the lock it named (for [`CONFLICT`]).
#[derive(Debug, Clone)]
pub struct Exchange {
    dialect: Dialect,
    operation: Operation,
    access: Access,
    lock: Option<HeaderValue>,
}

impl Exchange {
    /// The request with the headers of [`REQUEST_HEADERS`] copied under the names
    /// richdocuments reads (the originals stay, for richdocuments before 10.0).
    pub fn request<B>(&self, mut request: Request<B>) -> Request<B> {
        if self.dialect == Dialect::OnlyOffice {
            alias_headers(request.headers_mut(), self.operation);
        }
        request
    }

    /// The timestamp of a save [`STALE_SAVE`] checks, as the host will read it (so after
    /// [`Exchange::request`]); `None` when the rule does not apply: not an ONLYOFFICE
    /// pool, not a PutFile, or no timestamp (richdocuments then checks nothing either).
    pub fn save_timestamp<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        if self.dialect != Dialect::OnlyOffice || self.operation != STALE_SAVE.operation {
            return None;
        }
        headers
            .get(STALE_SAVE.timestamp)
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
    }

    /// The host's answer in the form the editor reads ([`CONFLICT`]).
    pub fn response<B>(&self, mut response: Response<B>) -> Response<B> {
        if self.dialect == Dialect::OnlyOffice
            && self.operation == CONFLICT.operation
            && response.status() == CONFLICT.status
        {
            let headers = response.headers_mut();
            if !headers.contains_key(LOCK) {
                let lock = self
                    .lock
                    .clone()
                    .unwrap_or_else(|| HeaderValue::from_static(""));
                headers.insert(LOCK, lock);
            }
            if !headers.contains_key(LOCK_FAILURE_REASON) {
                headers.insert(
                    LOCK_FAILURE_REASON,
                    HeaderValue::from_static(CONFLICT.reason),
                );
            }
        }
        response
    }

    /// Adapts a CheckFileInfo answer (already through [`super::translate`]) by
    /// [`CHECK_FILE_INFO`]. Every rule reads the host's fields as the host sent them, so
    /// the rows do not depend on their order.
    ///
    /// # Errors
    /// The refusal of a [`Derive::RefuseIfSet`] row; 502 when the answer is not a JSON
    /// object.
    pub fn check_file_info(&self, json: &mut Value, public_url: &Url) -> Result<(), Answer> {
        if self.dialect != Dialect::OnlyOffice {
            return Ok(());
        }
        let object = json
            .as_object_mut()
            .ok_or_else(|| Answer::HostFailed("CheckFileInfo is not a JSON object".into()))?;
        adapt_check_file_info(object, self.access, public_url)
    }
}

/// What a call may do, beyond what the host's token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The open asked for a read-only view (`permission=readonly`, sealed in the token).
    pub read_only_open: bool,
    /// The host's `WOPISrc` names an old version of the file ([`is_version`]).
    pub version: bool,
}

impl Access {
    /// The access of `grant`'s calls.
    pub fn of(grant: &Grant) -> Access {
        Access {
            read_only_open: grant.read_only,
            version: is_version(&grant.url),
        }
    }

    /// Whether nothing may be written through this grant.
    pub fn read_only(self) -> bool {
        self.read_only_open || self.version
    }
}

/// A WOPI call as the dialect tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GET /wopi/files/{id}`.
    CheckFileInfo,
    /// `GET /wopi/files/{id}/contents`.
    GetFile,
    /// `POST /wopi/files/{id}/contents`.
    PutFile,
    /// `LOCK`, `UNLOCK`, `REFRESH_LOCK`, `GET_LOCK`: they change no content.
    Lock,
    /// `PUT_RELATIVE`: a new file.
    PutRelativeFile,
    /// `RENAME_FILE`.
    RenameFile,
    /// Any other `POST` on a file (`DELETE`, `PUT_USER_INFO`, unknown overrides), which
    /// richdocuments lets fall through to its PutRelativeFile code: a write too.
    OtherWrite,
    /// Links, settings and anything else: no dialect.
    Other,
}

impl Operation {
    /// The operation of `call`, sent with `method` and `headers`.
    pub fn of(call: &WopiCall<'_>, method: &Method, headers: &HeaderMap) -> Operation {
        let wopi_override = headers
            .get("x-wopi-override")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or_default()
            .to_ascii_uppercase();
        match (call.endpoint, method) {
            (WopiEndpoint::File, &Method::GET) => Operation::CheckFileInfo,
            (WopiEndpoint::Contents, &Method::GET) => Operation::GetFile,
            (WopiEndpoint::Contents, &Method::POST) => Operation::PutFile,
            (WopiEndpoint::File, &Method::POST) => match wopi_override.as_str() {
                "LOCK" | "UNLOCK" | "REFRESH_LOCK" | "GET_LOCK" => Operation::Lock,
                "PUT_RELATIVE" => Operation::PutRelativeFile,
                "RENAME_FILE" => Operation::RenameFile,
                _ => Operation::OtherWrite,
            },
            _ => Operation::Other,
        }
    }
}

/// Whether the open query (`/officeswitch/open/...?WOPISrc=..&permission=readonly`) asks
/// for a read-only view, as richdocuments does for old versions, the compare view and
/// read-only previews.
pub fn read_only_open(query: Option<&str>) -> bool {
    query
        .and_then(|q| query_param(q, "permission"))
        .is_some_and(|p| p.eq_ignore_ascii_case("readonly"))
}

/// Whether a host `WOPISrc` names an old version: richdocuments' file ids are
/// `<fileid>_<instanceid>[_<version>]` (`Helper::parseFileId`), and a version other than
/// `0` is an old version, whose PutFile richdocuments writes to the current file.
pub fn is_version(wopi_src: &str) -> bool {
    let Ok(url) = Url::parse(wopi_src) else {
        return false;
    };
    let Some(segments) = url.path_segments() else {
        return false;
    };
    let segments: Vec<&str> = segments.collect();
    let [.., wopi, files, id] = segments.as_slice() else {
        return false;
    };
    if *wopi != "wopi" || *files != "files" {
        return false;
    }
    let parts: Vec<&str> = id.split('_').collect();
    matches!(parts.as_slice(), [_, _, version] if *version != "0")
}

/// When a row of [`CALLS`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always.
    Always,
    /// For a read-only open or an old version ([`Access::read_only`]).
    ReadOnly,
}

impl When {
    fn holds(self, access: Access) -> bool {
        match self {
            When::Always => true,
            When::ReadOnly => access.read_only(),
        }
    }
}

/// Why officeswitch answers a call itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A write through a read-only grant.
    ReadOnly,
    /// A rename, which richdocuments would turn into emptying the file.
    RenameOff,
    /// A file richdocuments shows with a watermark, which ONLYOFFICE cannot draw.
    SecureView,
}

impl Refusal {
    /// The answer officeswitch sends.
    pub fn answer(self) -> Answer {
        Answer::Dialect(self)
    }

    /// The HTTP status, as WOPI hosts answer: 403 as richdocuments refuses a write with a
    /// read-only token, 501 for an operation the host does not offer.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::ReadOnly | Refusal::SecureView => StatusCode::FORBIDDEN,
            Refusal::RenameOff => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// A short label for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::ReadOnly => "read_only",
            Refusal::RenameOff => "rename_off",
            Refusal::SecureView => "secure_view",
        }
    }

    /// What the editor is told (body and `X-WOPI-ServerError`, which WOPI clients log).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::ReadOnly => {
                "this document is open read-only (an old version or a read-only view); \
                 officeswitch writes nothing through it"
            }
            Refusal::RenameOff => {
                "renaming from ONLYOFFICE is off: Nextcloud would write the empty rename \
                 body into the file; rename it in Nextcloud Files"
            }
            Refusal::SecureView => {
                "Nextcloud shows this file with a watermark (secure view), which ONLYOFFICE \
                 cannot draw; route the format to Collabora for this organisation"
            }
        }
    }
}

/// A call officeswitch refuses for ONLYOFFICE pools.
#[derive(Debug)]
pub struct CallRule {
    /// The operations it covers.
    pub calls: &'static [Operation],
    /// When.
    pub when: When,
    /// The answer.
    pub refusal: Refusal,
    /// Why (docs/wopi.md's table repeats it).
    pub why: &'static str,
}

/// Calls refused for ONLYOFFICE pools, first match wins.
pub const CALLS: &[CallRule] = &[
    CallRule {
        calls: &[
            Operation::PutFile,
            Operation::PutRelativeFile,
            Operation::RenameFile,
            Operation::OtherWrite,
        ],
        when: When::ReadOnly,
        refusal: Refusal::ReadOnly,
        why: "richdocuments marks old versions and read-only views only with \
              `permission=readonly` in the page URL, which ONLYOFFICE ignores, and writes a \
              version id's PutFile to the current file: a write through such a grant could \
              only overwrite the current file with an old version",
    },
    CallRule {
        calls: &[Operation::RenameFile],
        when: When::Always,
        refusal: Refusal::RenameOff,
        why: "ONLYOFFICE sends RENAME_FILE without a body, and richdocuments moves the file \
              and then writes the request body into it: the renamed file would have 0 bytes. \
              Filling the body from GetFile would race a save and change the file's time, so \
              ONLYOFFICE's next save would be refused as out of date ([`CONFLICT`]); \
              renaming stays in Nextcloud Files",
    },
];

/// How a CheckFileInfo field is derived for ONLYOFFICE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derive {
    /// This value, always.
    Always(bool),
    /// `false` for a read-only grant; otherwise as the host sent it.
    FalseIfReadOnly,
    /// `true` for a read-only grant; otherwise as the host sent it.
    TrueIfReadOnly,
    /// `true` unless the host says `IsAnonymousUser` or the file is an old version.
    UnlessAnonymousOrVersion,
    /// `"BlockAll"` when the host's boolean field of this name is true; otherwise as the
    /// host sent it.
    BlockAllIf(&'static str),
    /// officeswitch's own origin (`scheme://host[:port]` of `public_url`), where the
    /// [`super::bridge`] page around the editor page lives.
    BridgeOrigin,
    /// The host's boolean field of this name (`false` when absent).
    FlagOf(&'static str),
    /// `false` when the host's `UserFriendlyName` is a non-empty string; otherwise as
    /// sent.
    FalseIfNamed,
    /// Refuse the call ([`Refusal::SecureView`]) when the field is a non-empty string.
    RefuseIfSet,
}

/// One CheckFileInfo field for ONLYOFFICE.
#[derive(Debug)]
pub struct FieldRule {
    /// The field ONLYOFFICE reads.
    pub field: &'static str,
    /// How it is derived from what richdocuments sent.
    pub derive: Derive,
    /// Why (docs/wopi.md's table repeats it).
    pub why: &'static str,
}

/// CheckFileInfo for ONLYOFFICE pools: each field ONLYOFFICE reads, derived from what
/// richdocuments sends. Fields not named here pass as they are.
pub const CHECK_FILE_INFO: &[FieldRule] = &[
    FieldRule {
        field: "WatermarkText",
        derive: Derive::RefuseIfSet,
        why: "richdocuments' secure view: ONLYOFFICE draws no watermark in WOPI mode, so \
              opening the file would drop its protection silently; refused (routing by user \
              would put one document in two suites)",
    },
    FieldRule {
        field: "UserCanWrite",
        derive: Derive::FalseIfReadOnly,
        why: "richdocuments says true for old versions and read-only views and relies on \
              `permission=readonly`, which ONLYOFFICE ignores; false opens ONLYOFFICE's \
              view mode (no lock, no save)",
    },
    FieldRule {
        field: "ReadOnly",
        derive: Derive::TrueIfReadOnly,
        why: "ONLYOFFICE's page and session read it beside UserCanWrite",
    },
    FieldRule {
        field: "SupportsUpdate",
        derive: Derive::FalseIfReadOnly,
        why: "ONLYOFFICE saves when SupportsUpdate or an edit right says so",
    },
    FieldRule {
        field: "UserCanNotWriteRelative",
        derive: Derive::TrueIfReadOnly,
        why: "no Save As from a read-only open: officeswitch refuses it",
    },
    FieldRule {
        field: "SupportsRename",
        derive: Derive::Always(false),
        why: "renaming from ONLYOFFICE would empty the file (see CALLS); off, so ONLYOFFICE \
              offers no rename",
    },
    FieldRule {
        field: "UserCanRename",
        derive: Derive::Always(false),
        why: "as SupportsRename",
    },
    FieldRule {
        field: "ClosePostMessage",
        derive: Derive::Always(true),
        why: "richdocuments asks for a close button with `closebutton=1`, which ONLYOFFICE \
              ignores; with this ONLYOFFICE shows one and posts UI_Close, which closes the \
              viewer",
    },
    FieldRule {
        field: "FileVersionPostMessage",
        derive: Derive::UnlessAnonymousOrVersion,
        why: "richdocuments asks for history with `revisionhistory=1` and opens its versions \
              sidebar on UI_FileVersions; not for guests or inside an old version, as \
              richdocuments' own EnableShare",
    },
    FieldRule {
        field: "CopyPasteRestrictions",
        derive: Derive::BlockAllIf("DisableCopy"),
        why: "hide-download shares and secure view say DisableCopy, which ONLYOFFICE does \
              not read",
    },
    FieldRule {
        field: "PostMessageOrigin",
        derive: Derive::BridgeOrigin,
        why: "ONLYOFFICE posts to and accepts from this string as an origin (richdocuments \
              sends its URL, path included, which is no origin below a path); its page sits \
              in officeswitch's bridge page, which relays to and from Nextcloud",
    },
    FieldRule {
        field: "FileSharingPostMessage",
        derive: Derive::FlagOf("EnableShare"),
        why: "richdocuments offers sharing with EnableShare; ONLYOFFICE shows its share \
              button with this and posts UI_Sharing, which the bridge passes as UI_Share",
    },
    FieldRule {
        field: "EditNotificationPostMessage",
        derive: Derive::Always(true),
        why: "ONLYOFFICE then posts Edit_Notification while there are unsaved edits, which \
              the bridge passes as Doc_ModifiedStatus: Files shows the file as changed",
    },
    FieldRule {
        field: "IsAnonymousUser",
        derive: Derive::FalseIfNamed,
        why: "ONLYOFFICE blanks anonymous users' names; richdocuments' guests gave theirs",
    },
];

/// Adapts `info` (the host's CheckFileInfo, URLs already translated) by
/// [`CHECK_FILE_INFO`] for `access`.
fn adapt_check_file_info(
    info: &mut Map<String, Value>,
    access: Access,
    public_url: &Url,
) -> Result<(), Answer> {
    let host = info.clone();
    let flag = |name: &str| host.get(name).and_then(Value::as_bool).unwrap_or(false);
    let non_empty = |name: &str| {
        host.get(name)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    for rule in CHECK_FILE_INFO {
        let value = match rule.derive {
            Derive::Always(value) => Some(Value::Bool(value)),
            Derive::FalseIfReadOnly => access.read_only().then_some(Value::Bool(false)),
            Derive::TrueIfReadOnly => access.read_only().then_some(Value::Bool(true)),
            Derive::UnlessAnonymousOrVersion => {
                Some(Value::Bool(!flag("IsAnonymousUser") && !access.version))
            }
            Derive::BlockAllIf(source) => flag(source).then(|| Value::String("BlockAll".into())),
            Derive::BridgeOrigin => Some(Value::String(public_url.origin().ascii_serialization())),
            Derive::FlagOf(source) => Some(Value::Bool(flag(source))),
            Derive::FalseIfNamed => {
                (flag(rule.field) && non_empty("UserFriendlyName")).then_some(Value::Bool(false))
            }
            Derive::RefuseIfSet => {
                if non_empty(rule.field) {
                    crate::metrics::global().rejection("dialect", Refusal::SecureView.reason());
                    return Err(Refusal::SecureView.answer());
                }
                None
            }
        };
        if let Some(value) = value {
            info.insert(rule.field.to_string(), value);
        }
    }
    Ok(())
}

/// A request header copied under another name.
#[derive(Debug)]
pub struct HeaderAlias {
    /// The operation it is sent with.
    pub operation: Operation,
    /// What ONLYOFFICE sends.
    pub from: &'static str,
    /// What richdocuments reads.
    pub to: &'static str,
    /// Why (docs/wopi.md's table repeats it).
    pub why: &'static str,
}

/// Request headers of ONLYOFFICE copied under richdocuments' name (when not sent already).
pub const REQUEST_HEADERS: &[HeaderAlias] = &[HeaderAlias {
    operation: Operation::PutFile,
    from: "x-lool-wopi-timestamp",
    to: "x-cool-wopi-timestamp",
    why: "richdocuments (10.0 on) refuses an out-of-date save only by X-COOL-WOPI-Timestamp; \
          ONLYOFFICE sends the file time it opened under the older X-LOOL- name, so its saves \
          overwrote changes made meanwhile",
}];

/// Copies the headers of [`REQUEST_HEADERS`] for `operation`.
fn alias_headers(headers: &mut HeaderMap, operation: Operation) {
    for alias in REQUEST_HEADERS.iter().filter(|a| a.operation == operation) {
        let to = HeaderName::from_static(alias.to);
        if headers.contains_key(&to) {
            continue;
        }
        if let Some(value) = headers.get(alias.from).cloned() {
            headers.insert(to, value);
        }
    }
}

/// `X-WOPI-Lock`.
const LOCK: HeaderName = HeaderName::from_static("x-wopi-lock");
/// `X-WOPI-LockFailureReason`.
const LOCK_FAILURE_REASON: HeaderName = HeaderName::from_static("x-wopi-lockfailurereason");

/// The host's conflict answer, and the form it reaches the editor in.
#[derive(Debug)]
pub struct ConflictRule {
    /// The operation.
    pub operation: Operation,
    /// The host's status.
    pub status: StatusCode,
    /// `X-WOPI-LockFailureReason` added.
    pub reason: &'static str,
    /// Why (docs/wopi.md's table repeats it).
    pub why: &'static str,
}

/// A save richdocuments would refuse as out of date, checked before its body moves.
#[derive(Debug)]
pub struct StaleSaveRule {
    /// The operation.
    pub operation: Operation,
    /// The request header richdocuments compares (after [`REQUEST_HEADERS`]).
    pub timestamp: &'static str,
    /// The CheckFileInfo field it compares it with (string equality, as richdocuments).
    pub current: &'static str,
    /// Why (docs/wopi.md's table repeats it).
    pub why: &'static str,
}

/// richdocuments refuses a PutFile whose `X-COOL-WOPI-Timestamp` is not the file's
/// `LastModifiedTime` ([`CONFLICT`]). ONLYOFFICE keeps a refused save as a forgotten file
/// under the document's id and, measured with 9.2.1, restores it at the document's next
/// open and saves it when that session ends with the time it just read: the save passes
/// and overwrites the newer file, even if nobody typed. So [`super::conflict`] compares
/// first and sends a stale save as a new file.
pub const STALE_SAVE: StaleSaveRule = StaleSaveRule {
    operation: Operation::PutFile,
    timestamp: "x-cool-wopi-timestamp",
    current: "LastModifiedTime",
    why: "a refused save becomes ONLYOFFICE's forgotten file, which its next session of the \
          document saves over the newer file; a new file beside it loses nothing and \
          leaves ONLYOFFICE nothing to restore",
};

/// richdocuments refuses an out-of-date PutFile with 409 and `{"COOLStatusCode":1010}`,
/// Collabora's form. WOPI's form of a 409 carries `X-WOPI-Lock` (the current lock;
/// richdocuments holds one lock for the editors, so the one the editor sent) and may say
/// why in `X-WOPI-LockFailureReason`; ONLYOFFICE reads the 409 as "lock mismatch or file
/// version conflict", saves nothing and keeps the edits as a forgotten file. [`STALE_SAVE`]
/// sends such saves as new files, so ONLYOFFICE meets this answer only when the file
/// changed between that check and the save.
pub const CONFLICT: ConflictRule = ConflictRule {
    operation: Operation::PutFile,
    status: StatusCode::CONFLICT,
    reason: "the file changed in Nextcloud since the editor opened it (COOLStatusCode 1010)",
    why: "WOPI's 409 names the lock; ONLYOFFICE keeps the refused save as a forgotten file \
          instead of overwriting Nextcloud's newer one",
};

/// A postMessage from ONLYOFFICE's page that richdocuments knows by another name.
#[derive(Debug)]
pub struct MessageRule {
    /// The `MessageId` ONLYOFFICE posts.
    pub from: &'static str,
    /// The `MessageId` richdocuments reads.
    pub to: &'static str,
    /// Values set on the renamed message (a JSON object; the others are kept).
    pub values: &'static str,
    /// Why (docs/wopi.md's table repeats it).
    pub why: &'static str,
}

/// Messages the bridge renames on their way from ONLYOFFICE's page to Nextcloud's.
/// Everything else passes as it came, both ways.
pub const MESSAGES_TO_HOST: &[MessageRule] = &[
    MessageRule {
        from: "UI_Sharing",
        to: "UI_Share",
        values: "{}",
        why: "ONLYOFFICE's share button posts UI_Sharing; richdocuments opens its sharing \
              sidebar on UI_Share",
    },
    MessageRule {
        from: "Edit_Notification",
        to: "Doc_ModifiedStatus",
        values: r#"{"Modified":true}"#,
        why: "ONLYOFFICE says its document has unsaved edits with Edit_Notification; \
              richdocuments refreshes the file's modification time in Files on \
              Doc_ModifiedStatus",
    },
];

/// The message the bridge posts to Nextcloud when ONLYOFFICE's page has loaded in it.
pub const FRAME_READY: MessageRule = MessageRule {
    from: "",
    to: "App_LoadingStatus",
    values: r#"{"Status":"Frame_Ready"}"#,
    why: "Nextcloud's mobile apps and direct editing show the editor on Frame_Ready, which \
          ONLYOFFICE never posts; richdocuments also sends Host_PostmessageReady on it",
};

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::wopi::token::GrantKind;

    const CURRENT: &str = "https://nc.example/index.php/apps/richdocuments/wopi/files/42_ocabc";
    const VERSION: &str =
        "https://nc.example/index.php/apps/richdocuments/wopi/files/42_ocabc_1700000000";

    fn grant(url: &str, read_only: bool) -> Grant {
        Grant {
            kind: GrantKind::File,
            file_id: "F".repeat(32),
            org: "acme".into(),
            pool: "onlyoffice".into(),
            url: url.into(),
            host_token: "t".into(),
            expires_at: 0,
            read_only,
        }
    }

    fn call(endpoint: WopiEndpoint) -> WopiCall<'static> {
        WopiCall {
            file_id: "F",
            endpoint,
        }
    }

    fn request(method: Method, wopi_override: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/wopi/files/F");
        if let Some(o) = wopi_override {
            builder = builder.header("x-wopi-override", o);
        }
        builder.body(()).unwrap()
    }

    /// richdocuments' CheckFileInfo for a logged-in user on a sub-path Nextcloud.
    fn host_info() -> Value {
        json!({
            "BaseFileName": "a.docx",
            "UserCanWrite": true,
            "UserCanNotWriteRelative": false,
            "SupportsRename": true,
            "UserCanRename": true,
            "EnableShare": true,
            "DisableCopy": false,
            "IsAnonymousUser": false,
            "UserFriendlyName": "Alice",
            "PostMessageOrigin": "https://nc.example/nextcloud/",
        })
    }

    fn adapted(info: Value, access: Access) -> Result<Value, Answer> {
        let mut info = info;
        adapt_check_file_info(info.as_object_mut().unwrap(), access, &public())?;
        Ok(info)
    }

    /// officeswitch's `public_url` (below a path, as a hoster may set it).
    fn public() -> Url {
        Url::parse("https://office.example:8443/officeswitch/").unwrap()
    }

    const WRITABLE: Access = Access {
        read_only_open: false,
        version: false,
    };

    #[test]
    fn versions_are_recognised_as_richdocuments_parses_file_ids() {
        assert!(!is_version(CURRENT));
        assert!(is_version(VERSION));
        assert!(!is_version(&format!("{CURRENT}_0")));
        assert!(!is_version("https://nc.example/other/path/42_oc_3"));
        assert!(!is_version("https://nc.example/wopi/files/1_2_3_4"));
        assert!(!is_version("not a url"));
        assert!(read_only_open(Some("WOPISrc=x&permission=readonly")));
        assert!(!read_only_open(Some("WOPISrc=x&permission=edit")));
        assert!(!read_only_open(None));
        assert!(Access::of(&grant(VERSION, false)).read_only());
        assert!(Access::of(&grant(CURRENT, true)).read_only());
        assert!(!Access::of(&grant(CURRENT, false)).read_only());
    }

    #[test]
    fn writable_onlyoffice_check_file_info_gets_the_fields_it_reads() {
        let info = adapted(host_info(), WRITABLE).unwrap();
        assert_eq!(info["UserCanWrite"], true);
        assert!(info.get("ReadOnly").is_none());
        assert_eq!(info["SupportsRename"], false);
        assert_eq!(info["UserCanRename"], false);
        assert_eq!(info["ClosePostMessage"], true);
        assert_eq!(info["FileVersionPostMessage"], true);
        assert!(info.get("CopyPasteRestrictions").is_none());
        assert_eq!(info["PostMessageOrigin"], "https://office.example:8443");
        assert_eq!(info["FileSharingPostMessage"], true);
        assert_eq!(info["EditNotificationPostMessage"], true);
        assert_eq!(info["IsAnonymousUser"], false);
        assert_eq!(info["UserFriendlyName"], "Alice");
    }

    #[test]
    fn read_only_versions_guests_and_hidden_downloads() {
        let version = Access {
            read_only_open: false,
            version: true,
        };
        let info = adapted(host_info(), version).unwrap();
        assert_eq!(info["UserCanWrite"], false);
        assert_eq!(info["ReadOnly"], true);
        assert_eq!(info["SupportsUpdate"], false);
        assert_eq!(info["UserCanNotWriteRelative"], true);
        assert_eq!(info["FileVersionPostMessage"], false);

        let mut guest = host_info();
        guest["IsAnonymousUser"] = json!(true);
        guest["UserFriendlyName"] = json!("Bob (guest)");
        guest["DisableCopy"] = json!(true);
        let info = adapted(guest.clone(), WRITABLE).unwrap();
        assert_eq!(
            info["IsAnonymousUser"], false,
            "a named guest keeps the name"
        );
        assert_eq!(info["FileVersionPostMessage"], false);
        assert_eq!(info["CopyPasteRestrictions"], "BlockAll");
        let mut unshared = host_info();
        unshared.as_object_mut().unwrap().remove("EnableShare");
        let info = adapted(unshared, WRITABLE).unwrap();
        assert_eq!(info["FileSharingPostMessage"], false, "no share button");
        guest["UserFriendlyName"] = json!("");
        let info = adapted(guest, WRITABLE).unwrap();
        assert_eq!(info["IsAnonymousUser"], true, "no name: stays anonymous");

        let mut secure = host_info();
        secure["WatermarkText"] = json!("Alice 2026-01-01");
        assert!(matches!(
            adapted(secure, WRITABLE),
            Err(Answer::Dialect(Refusal::SecureView))
        ));
        let mut empty = host_info();
        empty["WatermarkText"] = json!("");
        assert!(adapted(empty, WRITABLE).is_ok());
    }

    #[test]
    fn writes_through_read_only_grants_and_renames_are_refused_for_onlyoffice_only() {
        let contents = call(WopiEndpoint::Contents);
        let file = call(WopiEndpoint::File);
        let put = request(Method::POST, Some("PUT"));
        let rename = request(Method::POST, Some("RENAME_FILE"));
        let lock = request(Method::POST, Some("LOCK"));
        let delete = request(Method::POST, Some("DELETE"));
        let refused = |dialect: Dialect, call: &WopiCall<'_>, req: &Request<()>, g: &Grant| {
            dialect.exchange(call, req, g).err().map(|a| a.status())
        };
        let version = grant(VERSION, false);
        let viewer = grant(CURRENT, true);
        let editor = grant(CURRENT, false);
        let oo = Dialect::OnlyOffice;
        for read_only in [&version, &viewer] {
            assert_eq!(
                refused(oo, &contents, &put, read_only),
                Some(StatusCode::FORBIDDEN)
            );
            assert_eq!(
                refused(oo, &file, &delete, read_only),
                Some(StatusCode::FORBIDDEN)
            );
            assert_eq!(refused(oo, &file, &lock, read_only), None);
            assert_eq!(
                refused(oo, &file, &request(Method::GET, None), read_only),
                None
            );
        }
        assert_eq!(refused(oo, &contents, &put, &editor), None);
        assert_eq!(
            refused(oo, &file, &rename, &editor),
            Some(StatusCode::NOT_IMPLEMENTED)
        );
        for g in [&version, &viewer, &editor] {
            assert_eq!(refused(Dialect::Native, &contents, &put, g), None);
            assert_eq!(refused(Dialect::Native, &file, &rename, g), None);
        }
    }

    #[test]
    fn timestamps_are_copied_and_conflicts_name_the_lock() {
        let editor = grant(CURRENT, false);
        let put = Request::builder()
            .method(Method::POST)
            .uri("/wopi/files/F/contents")
            .header("x-wopi-override", "PUT")
            .header("x-wopi-lock", "doc-key")
            .header("x-lool-wopi-timestamp", "2026-01-01T00:00:00.000000Z")
            .body(())
            .unwrap();
        let contents = call(WopiEndpoint::Contents);
        let exchange = Dialect::OnlyOffice
            .exchange(&contents, &put, &editor)
            .unwrap();
        let sent = exchange.request(put.clone());
        assert_eq!(
            sent.headers()["x-cool-wopi-timestamp"],
            "2026-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            sent.headers()["x-lool-wopi-timestamp"],
            "2026-01-01T00:00:00.000000Z"
        );
        // The stale-save check reads what richdocuments will read, for ONLYOFFICE saves only.
        assert_eq!(
            exchange.save_timestamp(sent.headers()),
            Some("2026-01-01T00:00:00.000000Z")
        );
        assert_eq!(
            exchange.save_timestamp(put.headers()),
            None,
            "not yet copied"
        );
        let lock = Dialect::OnlyOffice
            .exchange(
                &call(WopiEndpoint::File),
                &request(Method::POST, Some("LOCK")),
                &editor,
            )
            .unwrap();
        assert_eq!(lock.save_timestamp(sent.headers()), None, "not a save");
        let conflict = Response::builder()
            .status(StatusCode::CONFLICT)
            .body(())
            .unwrap();
        let answered = exchange.response(conflict);
        assert_eq!(answered.status(), StatusCode::CONFLICT);
        assert_eq!(answered.headers()["x-wopi-lock"], "doc-key");
        assert!(answered.headers().contains_key("x-wopi-lockfailurereason"));
        let ok = exchange.response(Response::new(()));
        assert!(!ok.headers().contains_key("x-wopi-lock"));

        let native = Dialect::Native.exchange(&contents, &put, &editor).unwrap();
        let sent = native.request(put);
        assert!(!sent.headers().contains_key("x-cool-wopi-timestamp"));
        let mut cool = Request::new(());
        cool.headers_mut().insert(
            "x-cool-wopi-timestamp",
            HeaderValue::from_static("2026-01-01T00:00:00.000000Z"),
        );
        assert_eq!(
            native.save_timestamp(cool.headers()),
            None,
            "Collabora: untouched"
        );
        let mut kept = Request::new(());
        kept.headers_mut().insert(
            "x-cool-wopi-timestamp",
            HeaderValue::from_static("from the editor"),
        );
        kept.headers_mut().insert(
            "x-lool-wopi-timestamp",
            HeaderValue::from_static("older name"),
        );
        let kept = exchange.request(kept);
        assert_eq!(kept.headers()["x-cool-wopi-timestamp"], "from the editor");
    }

    #[test]
    fn native_check_file_info_is_untouched() {
        let exchange = Dialect::Native
            .exchange(
                &call(WopiEndpoint::File),
                &request(Method::GET, None),
                &grant(VERSION, true),
            )
            .unwrap();
        let mut info = host_info();
        info["WatermarkText"] = json!("kept");
        let before = info.clone();
        exchange.check_file_info(&mut info, &public()).unwrap();
        assert_eq!(info, before);
    }
}

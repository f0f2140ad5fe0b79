//! An ONLYOFFICE save of a file that changed in Nextcloud meanwhile becomes a new file
//! (a conflict copy) instead of a refusal that ONLYOFFICE would undo later.
//!
//! Why: richdocuments refuses a PutFile whose `X-COOL-WOPI-Timestamp` is not the file's
//! current time (409), and ONLYOFFICE keeps the refused save as a "forgotten file" under
//! the document's id, which is officeswitch's file id and must stay stable for co-editing.
//! Measured with ONLYOFFICE 9.2.1: the next time anyone opens the document, DocService
//! restores the forgotten file and saves it when that session ends, with the time it just
//! read: the save passes and overwrites the other client's newer file, even if nobody
//! typed ([`super::dialect::STALE_SAVE`]).
//!
//! So for a save the rule covers, before its body moves, [`check`] asks the host's
//! CheckFileInfo for the file's `LastModifiedTime` and compares it with the save's
//! timestamp as richdocuments does (string equality). A stale save is sent, body still
//! streaming, as a PutRelativeFile named `<name> (conflict <UTC time>).<ext>`, which
//! richdocuments stores in the user's root folder (beside the original on a public share),
//! and the editor's PutFile is answered 200 without `LastModifiedTime`: ONLYOFFICE keeps
//! nothing to restore, and a later save of the same session is still stale and becomes a
//! copy too. Nothing is remembered between calls; a change that lands between the check
//! and the save still meets the host's own 409 ([`super::dialect::CONFLICT`]).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Empty};
use serde_json::Value;

use super::answer::{Answer, ProxyBody};
use super::callback::Host;
use super::classify::{WopiCall, WopiEndpoint};
use super::dialect::{Exchange, STALE_SAVE};
use super::forward;
use crate::upstream::UpstreamBody;

/// What becomes of a call after [`check`].
pub enum Save {
    /// It goes to the host as it is: not a save the rule covers, or not stale.
    AsSent(Request<UpstreamBody>),
    /// A save the host would refuse as out of date: [`Stale::copy`] sends it as a new file.
    Stale(Stale),
}

/// A stale save, its body not yet read.
pub struct Stale {
    request: Request<UpstreamBody>,
    /// The file's name (CheckFileInfo's `BaseFileName`), which the copy's name starts from.
    name: String,
    /// The save's timestamp and the file's, for the log.
    sent: String,
    current: String,
}

/// Compares a save's timestamp with the file's time at the host before anything of the
/// save is sent. A CheckFileInfo the host refuses or answers without a usable
/// `LastModifiedTime` lets the save pass: the host then decides, as it does without
/// officeswitch.
///
/// # Errors
/// 502 or 504 when the host cannot be reached for the check (the save would meet the same).
pub async fn check(
    exchange: &Exchange,
    call: &WopiCall<'_>,
    request: Request<UpstreamBody>,
    host: &Host<'_>,
) -> Result<Save, Answer> {
    let Some(sent) = exchange
        .save_timestamp(request.headers())
        .map(str::to_owned)
    else {
        return Ok(Save::AsSent(request));
    };
    let mut probe = Request::new(Empty::new().map_err(|never| match never {}).boxed());
    // The editor's query (its token is replaced by the host's) and nothing else.
    *probe.uri_mut() = request.uri().clone();
    let response = host.send(&on_file(call), probe).await?;
    if !response.status().is_success() {
        return Ok(Save::AsSent(request));
    }
    let Ok(info) = host.json(response.into_body()).await else {
        return Ok(Save::AsSent(request));
    };
    match stale_against(&sent, &info) {
        Some(current) => Ok(Save::Stale(Stale {
            request,
            name: info["BaseFileName"]
                .as_str()
                .unwrap_or("document")
                .to_owned(),
            sent,
            current: current.to_owned(),
        })),
        None => Ok(Save::AsSent(request)),
    }
}

/// The file's time in `info` when it differs from the save's `sent` timestamp: the save
/// is one richdocuments would refuse.
fn stale_against<'i>(sent: &str, info: &'i Value) -> Option<&'i str> {
    info[STALE_SAVE.current]
        .as_str()
        .filter(|current| *current != sent)
}

impl Stale {
    /// Sends the save's body as a PutRelativeFile and answers the editor's PutFile.
    ///
    /// # Errors
    /// 502 or 504 when the host cannot be reached; a host that refuses the new file has
    /// its own answer passed on, so the editor never hears of success.
    pub async fn copy(
        self,
        call: &WopiCall<'_>,
        host: &Host<'_>,
    ) -> Result<Response<ProxyBody>, Answer> {
        let target = conflict_name(&self.name, SystemTime::now());
        let (mut parts, body) = self.request.into_parts();
        let headers = &mut parts.headers;
        headers.insert("x-wopi-override", HeaderValue::from_static("PUT_RELATIVE"));
        // UTF-7 is ASCII, so always header text.
        if let Ok(value) = HeaderValue::from_str(&utf7(&target)) {
            headers.insert("x-wopi-suggestedtarget", value);
        }
        if let Some(size) = headers.get(header::CONTENT_LENGTH).cloned() {
            headers.insert("x-wopi-size", size);
        }
        let response = host
            .send(&on_file(call), Request::from_parts(parts, body))
            .await?;
        let file = &host.grant.file_id;
        if !response.status().is_success() {
            tracing::warn!(
                file = %file,
                status = response.status().as_u16(),
                copy = %target,
                "an out-of-date ONLYOFFICE save could not be stored as a conflict copy; the editor keeps it"
            );
            return Ok(response.map(forward::client_body));
        }
        // The host names the file it made (it may add a number to make it unique).
        let stored = host
            .json(response.into_body())
            .await
            .ok()
            .and_then(|answer| answer["Name"].as_str().map(str::to_owned))
            .unwrap_or(target);
        crate::metrics::global().conflict_copy();
        tracing::warn!(
            file = %file,
            org = %host.grant.org,
            editor_time = %self.sent,
            file_time = %self.current,
            copy = %stored,
            "an out-of-date ONLYOFFICE save became a conflict copy: the file changed in Nextcloud since the editor read it"
        );
        Ok(Answer::ConflictCopied.into_response())
    }
}

/// The same call's file endpoint (`/wopi/files/{id}`), where CheckFileInfo and
/// PutRelativeFile go.
fn on_file<'a>(call: &WopiCall<'a>) -> WopiCall<'a> {
    WopiCall {
        file_id: call.file_id,
        endpoint: WopiEndpoint::File,
    }
}

/// `<stem> (conflict YYYY-MM-DD HHMMSS UTC).<ext>`: beside the original in a listing, and
/// without `:`, which Nextcloud refuses in names where Windows clients sync.
fn conflict_name(name: &str, now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (year, month, day) = crate::civil::date(secs / 86_400);
    let (hour, minute, second) = crate::civil::time_of_day(secs);
    let stamp =
        format!("conflict {year:04}-{month:02}-{day:02} {hour:02}{minute:02}{second:02} UTC");
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem} ({stamp}).{ext}"),
        _ => format!("{name} ({stamp})"),
    }
}

/// `text` in UTF-7 (RFC 2152), which WOPI asks for in `X-WOPI-SuggestedTarget`
/// (richdocuments decodes it with `mb_convert_encoding`). Printable ASCII stands for
/// itself, except `+` (written `+-`) and `\` and `~`, which RFC 2152 does not let stand;
/// runs of anything else are UTF-16 in base64 between `+` and `-`.
fn utf7(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|unit| unit.to_be_bytes()).collect();
        out.push('+');
        out.push_str(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes));
        out.push('-');
        run.clear();
    };
    for c in text.chars() {
        let direct = c == ' ' || (c.is_ascii_graphic() && !matches!(c, '+' | '\\' | '~'));
        if direct || c == '+' {
            flush(&mut run, &mut out);
            if c == '+' {
                out.push_str("+-");
            } else {
                out.push(c);
            }
        } else {
            run.extend_from_slice(c.encode_utf16(&mut [0; 2]));
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_utf7_as_wopi_asks() {
        assert_eq!(
            utf7("plan (conflict 2026-01-02 134507 UTC).docx"),
            "plan (conflict 2026-01-02 134507 UTC).docx"
        );
        assert_eq!(utf7("a+b.docx"), "a+-b.docx");
        // RFC 2152's own examples.
        assert_eq!(utf7("Hi Mom -\u{263A}-!"), "Hi Mom -+Jjo--!");
        assert_eq!(utf7("\u{65E5}\u{672C}\u{8A9E}"), "+ZeVnLIqe-");
        assert_eq!(utf7("A\u{2262}\u{391}."), "A+ImIDkQ-.");
        assert_eq!(utf7("Übersicht.docx"), "+ANw-bersicht.docx");
        // Outside the BMP: a surrogate pair in one run.
        assert_eq!(utf7("\u{1F600}"), "+2D3eAA-");
        assert_eq!(utf7("~\\"), "+AH4AXA-");
    }

    #[test]
    fn copies_are_named_beside_the_original_with_the_utc_time() {
        let at = UNIX_EPOCH + Duration::from_secs(1_767_362_307); // 2026-01-02 13:58:27 UTC
        assert_eq!(
            conflict_name("plan.docx", at),
            "plan (conflict 2026-01-02 135827 UTC).docx"
        );
        assert_eq!(
            conflict_name("a.b.xlsx", at),
            "a.b (conflict 2026-01-02 135827 UTC).xlsx"
        );
        assert_eq!(
            conflict_name(".docx", at),
            ".docx (conflict 2026-01-02 135827 UTC)"
        );
        assert_eq!(
            conflict_name("notes", at),
            "notes (conflict 2026-01-02 135827 UTC)"
        );
    }

    #[test]
    fn a_save_is_stale_when_the_file_time_differs_as_a_string() {
        let info = json!({"LastModifiedTime": "2026-01-02T13:58:27.000000Z"});
        assert_eq!(stale_against("2026-01-02T13:58:27.000000Z", &info), None);
        // richdocuments compares strings: another spelling of the same instant differs.
        assert_eq!(
            stale_against("2026-01-02T13:58:27Z", &info),
            Some("2026-01-02T13:58:27.000000Z")
        );
        assert_eq!(
            stale_against("2026-01-01T00:00:00.000000Z", &json!({})),
            None
        );
        assert_eq!(
            stale_against("x", &json!({"LastModifiedTime": 5})),
            None,
            "no usable time: the host decides"
        );
    }
}

//! The bridge: a small page of officeswitch's around an editor page whose postMessages
//! richdocuments does not understand (ONLYOFFICE's, [`super::dialect::Dialect::bridged`]).
//!
//! richdocuments and ONLYOFFICE both speak WOPI's postMessage protocol (JSON strings
//! `{MessageId, SendTime, Values}` between the host page and the editor frame), but not
//! the same messages: Nextcloud's mobile apps wait for `Frame_Ready`, which ONLYOFFICE
//! never posts; ONLYOFFICE's share button posts `UI_Sharing` where richdocuments reads
//! `UI_Share` (the rows of [`super::dialect::MESSAGES_TO_HOST`]). So for such pools step 1
//! of an open ([`super::open`]) answers this page instead of the `307`: it re-posts the
//! same form to the same address, into its own full-size iframe, and relays messages:
//!
//! - from Nextcloud (its parent, only from the organisation's origins) to the editor
//!   frame, as they came;
//! - from the editor frame (only its own origin) to Nextcloud, renamed by the dialect's
//!   table, plus `Frame_Ready` when the editor page has loaded, and `Action_Load_Resp`
//!   with `success: false` when what loaded is one of officeswitch's own error answers
//!   (the open failed: richdocuments shows the reason instead of waiting for its timeout).
//!
//! The editor page sits on officeswitch's origin, like the bridge, and ONLYOFFICE posts
//! to and accepts from the `PostMessageOrigin` of CheckFileInfo, which the dialect sets to
//! that origin. The bridge depends only on the protocol, never on the editor page's own
//! script, and pages that need no bridge (Collabora's) keep the plain `307`.

use std::sync::LazyLock;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use url::Url;

use super::answer::Answer;
use super::dialect::{FRAME_READY, MESSAGES_TO_HOST, MessageRule};

/// The bridge page: its HTML and the `Content-Security-Policy` it is served with.
#[derive(Debug, Clone)]
pub struct BridgePage {
    /// The page.
    pub html: String,
    /// Its policy: nothing but its own script and style, frames and forms of its own
    /// origin, framed only by the organisation's Nextcloud.
    pub csp: String,
}

/// The relay. Its configuration comes from the JSON block `officeswitch-bridge`.
const SCRIPT: &str = r#"(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('officeswitch-bridge').textContent);
  var frame = document.getElementById('officeswitch-editor');
  var own = window.location.origin;
  var ancestor = window.location.ancestorOrigins && window.location.ancestorOrigins[0];
  var parentOrigin = config.parents.indexOf(ancestor) >= 0 ? ancestor : null;
  var toHost = function (data) {
    var origins = parentOrigin ? [parentOrigin] : config.parents;
    origins.forEach(function (origin) { window.parent.postMessage(data, origin); });
  };
  var message = function (rule, values) {
    var merged = Object.assign({}, values || {}, rule.values);
    return JSON.stringify({ MessageId: rule.to, SendTime: Date.now(), Values: merged });
  };
  var renamed = function (data) {
    var parsed = null;
    try { parsed = JSON.parse(data); } catch (e) { return data; }
    var rule = parsed && config.toHost[parsed.MessageId];
    return rule ? message(rule, parsed.Values) : data;
  };
  window.addEventListener('message', function (event) {
    if (event.source === frame.contentWindow && event.origin === own) {
      toHost(typeof event.data === 'string' ? renamed(event.data) : event.data);
    } else if (event.source === window.parent && config.parents.indexOf(event.origin) >= 0) {
      parentOrigin = event.origin;
      frame.contentWindow.postMessage(event.data, own);
    }
  }, false);
  frame.addEventListener('load', function () {
    var loaded = null;
    try { loaded = frame.contentDocument; } catch (e) { loaded = null; }
    if (!loaded || loaded.URL === 'about:blank') return;
    toHost(message(config.frameReady, {}));
    if (loaded.contentType !== 'text/html') {
      var why = (loaded.body && loaded.body.textContent || '').trim().slice(0, 300);
      toHost(message(config.loadFailed, { success: false, errorMsg: why }));
    }
  }, false);
  document.getElementById('officeswitch-open').submit();
})();
"#;

/// The page's only style: the editor frame fills it.
const STYLE: &str = "html,body{margin:0;height:100%;overflow:hidden}\
iframe{display:block;width:100%;height:100%;border:0}";

/// What the bridge posts when the editor frame shows one of officeswitch's own errors.
const LOAD_FAILED: MessageRule = MessageRule {
    from: "",
    to: "Action_Load_Resp",
    values: r#"{"success":false}"#,
    why: "the open failed before the editor page (officeswitch's own error answer)",
};

/// `'sha256-…'` of an inline script or style, as CSP names it.
fn csp_hash(text: &str) -> String {
    format!(
        "'sha256-{}'",
        STANDARD.encode(digest(&SHA256, text.as_bytes()).as_ref())
    )
}

/// The policy's fixed part (hashes computed once).
static POLICY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; frame-src 'self'; \
         form-action 'self'; base-uri 'none'",
        csp_hash(SCRIPT),
        csp_hash(STYLE)
    )
});

/// Step 1 of an open in a bridged pool: the page that posts `form` to `location` (the
/// editor page address the `307` would name) and relays for Nextcloud at `origins` (the
/// organisation's, `scheme://host:port`).
pub fn page(location: &str, form: &[u8], origins: &[String]) -> Answer {
    let parents: Vec<String> = origins.iter().filter_map(|o| browser_origin(o)).collect();
    let config = json!({
        "parents": parents,
        "toHost": MESSAGES_TO_HOST
            .iter()
            .map(|rule| (rule.from.to_string(), rule_json(rule)))
            .collect::<Map<String, Value>>(),
        "frameReady": rule_json(&FRAME_READY),
        "loadFailed": rule_json(&LOAD_FAILED),
    });
    // Inside <script type="application/json">: no `<` may end the element early.
    let config = config.to_string().replace('<', "\\u003c");
    let fields: String = url::form_urlencoded::parse(form)
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                attribute(&name),
                attribute(&value)
            )
        })
        .collect();
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>officeswitch</title>\
         <style>{STYLE}</style></head><body>\
         <form id=\"officeswitch-open\" method=\"post\" action=\"{action}\" \
         target=\"officeswitch-editor\">{fields}</form>\
         <iframe id=\"officeswitch-editor\" name=\"officeswitch-editor\" title=\"editor\" \
         allow=\"clipboard-read; clipboard-write; fullscreen\"></iframe>\
         <script type=\"application/json\" id=\"officeswitch-bridge\">{config}</script>\
         <script>{SCRIPT}</script></body></html>\n",
        action = attribute(location),
    );
    let ancestors = if parents.is_empty() {
        "'none'".to_string()
    } else {
        parents.join(" ")
    };
    Answer::Bridge(BridgePage {
        html,
        csp: format!("{}; frame-ancestors {ancestors}", *POLICY),
    })
}

/// A rule as the script reads it: the new `MessageId` and the values to set.
fn rule_json(rule: &MessageRule) -> Value {
    let values: Value = serde_json::from_str(rule.values).unwrap_or_else(|_| json!({}));
    json!({ "to": rule.to, "values": values })
}

/// An organisation origin as a browser serialises it (`event.origin`: no default port).
fn browser_origin(origin: &str) -> Option<String> {
    let origin = Url::parse(origin).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// `text` escaped for a double-quoted HTML attribute.
fn attribute(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(form: &[u8]) -> BridgePage {
        match page(
            "https://office.example/hosting/wopi/word/edit?WOPISrc=x&officeswitch_ticket=t",
            form,
            &[
                "https://cloud.acme.example:443".to_string(),
                "http://10.0.0.5:8080".to_string(),
            ],
        ) {
            Answer::Bridge(page) => page,
            other => panic!("not a bridge page: {other:?}"),
        }
    }

    #[test]
    fn the_form_is_reposted_field_for_field_and_escaped() {
        let page = bridge(b"access_token=a%22b%3C%2Fscript%3E&access_token_ttl=0&theme=x+y");
        assert!(
            page.html.contains(
                r#"<input type="hidden" name="access_token" value="a&quot;b&lt;/script&gt;">"#
            ),
            "{}",
            page.html
        );
        assert!(page.html.contains(r#"name="theme" value="x y""#));
        assert!(page.html.contains(
            r#"action="https://office.example/hosting/wopi/word/edit?WOPISrc=x&amp;officeswitch_ticket=t""#
        ));
    }

    #[test]
    fn the_relay_knows_the_dialects_messages_and_the_browsers_origins() {
        let page = bridge(b"access_token=t");
        let marker = "id=\"officeswitch-bridge\">";
        let start = page.html.find(marker).unwrap() + marker.len();
        let end = start + page.html[start..].find("</script>").unwrap();
        let config: Value = serde_json::from_str(&page.html[start..end]).unwrap();
        assert_eq!(
            config["parents"],
            json!(["https://cloud.acme.example", "http://10.0.0.5:8080"])
        );
        assert_eq!(config["toHost"]["UI_Sharing"]["to"], "UI_Share");
        assert_eq!(
            config["toHost"]["Edit_Notification"]["values"],
            json!({"Modified": true})
        );
        assert_eq!(config["frameReady"]["to"], "App_LoadingStatus");
        assert_eq!(config["frameReady"]["values"]["Status"], "Frame_Ready");
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_script_and_style() {
        let page = bridge(b"access_token=t");
        assert!(page.html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(page.html.contains(&format!("<style>{STYLE}</style>")));
        assert!(
            page.csp
                .contains(&format!("script-src {};", csp_hash(SCRIPT)))
        );
        assert!(
            page.csp
                .contains(&format!("style-src {};", csp_hash(STYLE)))
        );
        assert!(
            page.csp
                .ends_with("frame-ancestors https://cloud.acme.example http://10.0.0.5:8080")
        );
        let unframed = match page_for_no_origins() {
            Answer::Bridge(page) => page,
            other => panic!("{other:?}"),
        };
        assert!(unframed.csp.ends_with("frame-ancestors 'none'"));
    }

    fn page_for_no_origins() -> Answer {
        page("https://office.example/p", b"access_token=t", &[])
    }
}

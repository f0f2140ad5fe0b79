//! The `/hosting/capabilities` JSON served to Nextcloud, built from the pools' own.
//!
//! richdocuments gates features on this object (see `shared/fixtures/RICHDOCUMENTS-USAGE.md`).
//! Collabora's object is the base: richdocuments compares `productVersion` against
//! Collabora version numbers, and OnlyOffice's imitation (no `productName`, OnlyOffice
//! build numbers as `productVersion`) must not win. Then, field by field:
//!
//! | field | served value | why |
//! |---|---|---|
//! | `productName`, `productVersion`, `productVersionHash`, `serverId` | Collabora's | version gates are Collabora's |
//! | `convert-to` | Collabora's | officeswitch sends `/cool/convert-to` (previews) to the Collabora pool |
//! | `hasTemplateSource`, `hasMobileSupport`, `hasTemplateSaveAs` | true only if every suite says true | these change what Nextcloud does for every file, whichever suite opens it |
//! | `hasZoteroSupport`, `hasSettingIframeSupport`, `hasDocumentSigningSupport` | Collabora's | extra CheckFileInfo fields and Collabora settings pages; OnlyOffice ignores them |
//! | `hasWASMSupport` | false | WASM mode runs Collabora in the browser for any file, bypassing the per-format routing |
//! | `hasWopiAccessCheck` | false | the check asks an editor whether it reaches Nextcloud; editors reach Nextcloud through officeswitch, so the answer would test the wrong path |
//! | `hasProxyPrefix` | false | officeswitch is a plain reverse proxy, not Collabora's proxy.php |
//!
//! Other fields are passed through from the base object unchanged.
//! With no Collabora pool the OnlyOffice object is the base, without its `productVersion`.

use serde_json::{Map, Value};

use crate::config::SuiteKind;

/// Flags that are true only when every suite supports them.
const ALL_SUITES_FLAGS: [&str; 3] = ["hasTemplateSource", "hasMobileSupport", "hasTemplateSaveAs"];
/// Flags officeswitch always turns off (reasons in the module doc).
const OFF_FLAGS: [&str; 3] = ["hasWASMSupport", "hasWopiAccessCheck", "hasProxyPrefix"];

/// Merges the capabilities of the pools that have one, given as (suite, object) in
/// preference order. `None` when no pool has capabilities.
pub fn merge(pools: &[(SuiteKind, &Map<String, Value>)]) -> Option<Map<String, Value>> {
    let collabora = pools.iter().find(|(k, _)| *k == SuiteKind::Collabora);
    let mut merged = match collabora {
        Some((_, caps)) => (*caps).clone(),
        None => {
            let (_, caps) = pools.first()?;
            let mut caps = (*caps).clone();
            caps.remove("productVersion");
            caps
        }
    };
    for flag in ALL_SUITES_FLAGS {
        let all = pools
            .iter()
            .all(|(_, caps)| caps.get(flag).and_then(Value::as_bool).unwrap_or(false));
        merged.insert(flag.to_string(), Value::Bool(all));
    }
    for flag in OFF_FLAGS {
        merged.insert(flag.to_string(), Value::Bool(false));
    }
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> Map<String, Value> {
        serde_json::from_str(s).unwrap()
    }

    fn onlyoffice() -> Map<String, Value> {
        obj(
            r#"{"convert-to":{"available":true,"endpoint":"/lool/convert-to"},"hasMobileSupport":true,"hasProxyPrefix":false,"hasTemplateSaveAs":false,"hasTemplateSource":true,"productVersion":"9.3.1"}"#,
        )
    }

    #[test]
    fn collabora_wins_version_and_flags_are_combined() {
        let fixture = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/collabora-capabilities-code-23.05.9.1.json"
        ))
        .unwrap();
        let cool = obj(&fixture);
        let oo = onlyoffice();
        let merged = merge(&[(SuiteKind::OnlyOffice, &oo), (SuiteKind::Collabora, &cool)]).unwrap();
        assert_eq!(merged["productVersion"], "23.05.9.1");
        assert_eq!(
            merged["productName"],
            "Collabora Online Development Edition"
        );
        assert_eq!(merged["convert-to"], cool["convert-to"]);
        assert_eq!(merged["hasTemplateSource"], true);
        assert_eq!(merged["hasZoteroSupport"], true);
        assert_eq!(merged["hasWASMSupport"], false);
        assert_eq!(merged["hasWopiAccessCheck"], false);
    }

    #[test]
    fn a_flag_one_suite_lacks_is_off() {
        let cool =
            obj(r#"{"productVersion":"24.04.1","hasTemplateSource":true,"hasMobileSupport":true}"#);
        let mut oo = onlyoffice();
        oo.remove("hasMobileSupport");
        let merged = merge(&[(SuiteKind::Collabora, &cool), (SuiteKind::OnlyOffice, &oo)]).unwrap();
        assert_eq!(merged["hasMobileSupport"], false);
        assert_eq!(merged["hasTemplateSource"], true);
    }

    #[test]
    fn onlyoffice_alone_does_not_claim_a_collabora_version() {
        let oo = onlyoffice();
        let merged = merge(&[(SuiteKind::OnlyOffice, &oo)]).unwrap();
        assert!(!merged.contains_key("productVersion"));
        assert!(merge(&[]).is_none());
    }
}

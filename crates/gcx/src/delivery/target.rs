//! The endpoints messages go to: a name (`crm`, `qa`), a URL and a signer, read and
//! checked from the configuration once, so a bad setting fails at start, by name.

use crate::config::{Config, WebhookTarget};

use super::DeliveryError;
use super::signer::Signer;

/// The endpoint name of CRM synchronization webhooks (PROTOCOL.md section 5).
pub const CRM: &str = "crm";
/// The endpoint name of QA platform exports (PROTOCOL.md section 6).
pub const QA: &str = "qa";

/// One configured endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    /// The `endpoint` of its outbox rows, and the label of its metrics.
    pub name: &'static str,
    pub url: reqwest::Url,
    pub signer: Signer,
}

/// How each endpoint's settings are named in configuration files (see `config::keys`)
/// and the environment (PROTOCOL.md section 5's variables), for error messages.
struct SettingNames {
    name: &'static str,
    url: &'static str,
    secret: &'static str,
}

const CRM_SETTINGS: SettingNames = SettingNames {
    name: CRM,
    url: "crm.url (CRM_WEBHOOK_URL)",
    secret: "crm.secret (GCX_CRM_WEBHOOK_SECRET)",
};
const QA_SETTINGS: SettingNames = SettingNames {
    name: QA,
    url: "qa.url (QA_PLATFORM_ENDPOINT)",
    secret: "qa.secret (GCX_QA_WEBHOOK_SECRET)",
};

/// The endpoints with a URL, CRM first. An endpoint without a URL is left out: its rows
/// stay pending until one is configured.
pub fn from_config(config: &Config) -> Result<Vec<Target>, DeliveryError> {
    named(config, &[CRM, QA])
}

/// [`from_config`] for the endpoints in `names` only; the others' settings are not read.
pub fn named(config: &Config, names: &[&str]) -> Result<Vec<Target>, DeliveryError> {
    let mut targets = Vec::new();
    for (settings, target) in [(CRM_SETTINGS, &config.crm), (QA_SETTINGS, &config.qa)] {
        if !names.contains(&settings.name) {
            continue;
        }
        if let Some(t) = one(&settings, target)? {
            targets.push(t);
        }
    }
    Ok(targets)
}

fn one(names: &SettingNames, target: &WebhookTarget) -> Result<Option<Target>, DeliveryError> {
    let Some(raw) = target
        .url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    let url = parse_url(raw).map_err(|reason| DeliveryError::InvalidSetting {
        setting: names.url,
        reason,
    })?;
    let signer = match &target.secret {
        None => Signer::unsigned(),
        Some(secret) => {
            Signer::from_secret(secret.expose()).map_err(|e| DeliveryError::InvalidSetting {
                setting: names.secret,
                reason: e.to_string(),
            })?
        }
    };
    Ok(Some(Target {
        name: names.name,
        url,
        signer,
    }))
}

/// An absolute `http://` or `https://` URL with a host. The reason never repeats the URL,
/// which may carry credentials.
fn parse_url(raw: &str) -> Result<reqwest::Url, String> {
    const ACCEPTED: &str = "accepted: an absolute http:// or https:// URL";
    let url = reqwest::Url::parse(raw).map_err(|e| format!("is not a URL ({e}); {ACCEPTED}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("has scheme `{}`; {ACCEPTED}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("has no host; {ACCEPTED}"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn config(crm_url: Option<&str>, crm_secret: Option<&str>, qa_url: Option<&str>) -> Config {
        let mut c = Config::default();
        c.crm.url = crm_url.map(String::from);
        c.crm.secret = crm_secret.map(Secret::new);
        c.qa.url = qa_url.map(String::from);
        c
    }

    #[test]
    fn endpoints_without_a_url_are_skipped() {
        let targets = from_config(&config(None, None, Some("http://127.0.0.1:9/qa"))).unwrap();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].name, QA);
        assert!(!targets[0].signer.is_signing());
        assert!(
            from_config(&config(Some("  "), None, None))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_signed_crm_target() {
        let targets = from_config(&config(
            Some("https://crm.example.com/hook"),
            Some("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            None,
        ))
        .unwrap();
        assert_eq!(targets[0].name, CRM);
        assert!(targets[0].signer.is_signing());
    }

    #[test]
    fn bad_settings_are_named_and_secrets_never_shown() {
        for (url, secret, setting) in [
            ("not a url", None, "crm.url"),
            ("ftp://example.com/x", None, "crm.url"),
            ("http://", None, "crm.url"),
            (
                "http://127.0.0.1/x",
                Some("whsec_%%%topsecret"),
                "crm.secret",
            ),
        ] {
            let err = from_config(&config(Some(url), secret, None))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(setting), "{err}");
            assert!(err.contains("accepted"), "{err}");
            assert!(!err.contains("topsecret"), "{err}");
        }
    }

    #[test]
    fn named_reads_only_the_endpoints_asked_for() {
        // A broken CRM setting does not stop the QA endpoint alone.
        let c = config(Some("not a url"), None, Some("http://127.0.0.1:9/qa"));
        let targets = named(&c, &[QA]).unwrap();
        assert_eq!(targets.iter().map(|t| t.name).collect::<Vec<_>>(), vec![QA]);
        assert!(named(&c, &[CRM]).is_err());
        assert!(named(&c, &[]).unwrap().is_empty());
    }

    #[test]
    fn credentials_in_a_url_are_not_repeated() {
        let err = from_config(&config(Some("gopher://user:hunter2@x/"), None, None))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}

//! Working out the three endpoints (PROTOCOL.md section 1) from the `genesys` settings:
//! `base_url` (one sandbox serves all three) wins over explicit `api_base`/`login_base`/
//! `assist_stream_url`, which win over what `region` implies. Plain `http://`/`ws://` is
//! accepted only for loopback hosts unless `allow_insecure` is set.

use std::net::IpAddr;

use gcx_protocol::assist::STREAM_PATH;
use gcx_protocol::region;
use reqwest::Url;
use serde::Serialize;

use super::{ConfigError, GenesysConfig};

/// Where gcx logs in, calls the API and opens the assist stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    /// `https://api.<domain>` (no trailing slash).
    pub api_base: String,
    /// `https://login.<domain>` (no trailing slash).
    pub login_base: String,
    /// `wss://api.<domain>/api/v2/agentassist/stream`.
    pub assist_stream_url: String,
}

impl Endpoints {
    /// Whether every endpoint is on this machine (a sandbox): then, with no OAuth client
    /// configured, the sandbox's built-in demo client is used.
    pub fn on_loopback(&self) -> bool {
        [&self.api_base, &self.login_base, &self.assist_stream_url]
            .iter()
            .all(|u| {
                Url::parse(u)
                    .ok()
                    .and_then(|u| u.host_str().map(is_loopback))
                    .unwrap_or(false)
            })
    }
}

/// The endpoints of `g`, or an error naming the setting at fault and what is accepted.
pub fn endpoints(g: &GenesysConfig) -> Result<Endpoints, ConfigError> {
    if let Some(base) = non_empty(&g.base_url) {
        let url = parse(
            "genesys.base_url",
            base,
            &["http", "https"],
            g.allow_insecure,
        )?;
        let api = trimmed(&url);
        let ws_scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        let mut stream = url.clone();
        // Switching between http(s) and ws(s) keeps a URL "special", so this cannot fail;
        // still, fall back to text replacement rather than assume.
        let stream = if stream.set_scheme(ws_scheme).is_ok() {
            format!("{}{STREAM_PATH}", trimmed(&stream))
        } else {
            format!("{ws_scheme}{}{STREAM_PATH}", &api[url.scheme().len()..])
        };
        return Ok(Endpoints {
            login_base: api.clone(),
            api_base: api,
            assist_stream_url: stream,
        });
    }

    let domain = match non_empty(&g.region) {
        Some(r) => Some(region::domain_for(r).ok_or_else(|| {
            ConfigError::Endpoint(format!(
                "genesys.region {r:?} is not a Genesys Cloud region; accepted names: {} (or _ for -), or their domains: {}",
                region_names(),
                region_domains()
            ))
        })?),
        None => None,
    };
    let pick = |key: &str,
                explicit: &Option<String>,
                schemes: &[&str],
                derived: Option<String>|
     -> Result<Option<String>, ConfigError> {
        match non_empty(explicit) {
            Some(text) => Ok(Some(trimmed(&parse(key, text, schemes, g.allow_insecure)?))),
            None => Ok(derived),
        }
    };
    let api = pick(
        "genesys.api_base",
        &g.api_base,
        &["http", "https"],
        domain.map(region::api_base),
    )?;
    let login = pick(
        "genesys.login_base",
        &g.login_base,
        &["http", "https"],
        domain.map(region::login_base),
    )?;
    let stream = pick(
        "genesys.assist_stream_url",
        &g.assist_stream_url,
        &["ws", "wss"],
        domain.map(region::assist_stream_url),
    )?;
    match (api, login, stream) {
        (Some(api_base), Some(login_base), Some(assist_stream_url)) => Ok(Endpoints {
            api_base,
            login_base,
            assist_stream_url,
        }),
        (api, login, stream) => {
            let missing: Vec<&str> = [
                ("api_base", api.is_none()),
                ("login_base", login.is_none()),
                ("assist_stream_url", stream.is_none()),
            ]
            .into_iter()
            .filter(|(_, m)| *m)
            .map(|(k, _)| k)
            .collect();
            let what = if missing.len() == 3 {
                "no Genesys Cloud endpoint is configured".to_owned()
            } else {
                format!(
                    "genesys.{} not set and no region to derive it from",
                    missing.join(", genesys.")
                )
            };
            Err(ConfigError::Endpoint(format!(
                "{what}; set genesys.region (--region, GENESYSCLOUD_REGION; one of {}), or genesys.base_url (--base-url, GCX_BASE_URL) for a sandbox, or all of genesys.api_base, genesys.login_base and genesys.assist_stream_url",
                region_names()
            )))
        }
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn region_names() -> String {
    let names: Vec<&str> = region::REGIONS.iter().map(|(n, _)| *n).collect();
    names.join(", ")
}

fn region_domains() -> String {
    let domains: Vec<&str> = region::REGIONS.iter().map(|(_, d)| *d).collect();
    domains.join(", ")
}

/// The URL as text without a trailing slash.
fn trimmed(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// Parses `text` for setting `key`: one of `schemes`, a host, and the loopback rule for
/// the plain schemes.
fn parse(
    key: &str,
    text: &str,
    schemes: &[&str],
    allow_insecure: bool,
) -> Result<Url, ConfigError> {
    let bad = |why: String| ConfigError::Endpoint(format!("{key} {text:?} {why}"));
    let url = Url::parse(text).map_err(|e| {
        bad(format!(
            "is not a URL ({e}); expected e.g. {}://host[:port]",
            schemes[schemes.len() - 1]
        ))
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(bad(format!(
            "has scheme {}; expected {}",
            url.scheme(),
            schemes.join(" or ")
        )));
    }
    let Some(host) = url.host_str() else {
        return Err(bad("has no host".into()));
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment".into()));
    }
    let plain = matches!(url.scheme(), "http" | "ws");
    if plain && !allow_insecure && !is_loopback(host) {
        return Err(bad(format!(
            "uses plain {} to a host that is not loopback; use {}s://, or set genesys.allow_insecure = true (GCX_ALLOW_INSECURE=true) to accept it",
            url.scheme(),
            url.scheme()
        )));
    }
    Ok(url)
}

/// `localhost`, `127.0.0.0/8`, `::1`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> GenesysConfig {
        GenesysConfig::default()
    }

    #[track_caller]
    fn err(c: GenesysConfig) -> String {
        endpoints(&c).unwrap_err().to_string()
    }

    #[test]
    fn region_by_name_or_domain() {
        for r in ["eu-west-1", "eu_west_1", "mypurecloud.ie", "EU-WEST-1"] {
            let e = endpoints(&GenesysConfig {
                region: Some(r.into()),
                ..g()
            })
            .unwrap();
            assert_eq!(e.api_base, "https://api.mypurecloud.ie");
            assert_eq!(e.login_base, "https://login.mypurecloud.ie");
            assert_eq!(
                e.assist_stream_url,
                "wss://api.mypurecloud.ie/api/v2/agentassist/stream"
            );
        }
    }

    #[test]
    fn unknown_region_lists_the_names() {
        let e = err(GenesysConfig {
            region: Some("mars-1".into()),
            ..g()
        });
        assert!(e.contains("genesys.region \"mars-1\""), "{e}");
        assert!(e.contains("us-east-1, us-east-2"), "{e}");
        assert!(e.contains("mypurecloud.com"), "{e}");
    }

    #[test]
    fn base_url_serves_all_three() {
        let e = endpoints(&GenesysConfig {
            base_url: Some("http://127.0.0.1:4010/".into()),
            region: Some("us-east-1".into()),
            api_base: Some("https://elsewhere.example".into()),
            ..g()
        })
        .unwrap();
        assert_eq!(e.api_base, "http://127.0.0.1:4010");
        assert_eq!(e.login_base, "http://127.0.0.1:4010");
        assert_eq!(
            e.assist_stream_url,
            "ws://127.0.0.1:4010/api/v2/agentassist/stream"
        );
        let e = endpoints(&GenesysConfig {
            base_url: Some("https://sandbox.example.com/gcx".into()),
            ..g()
        })
        .unwrap();
        assert_eq!(
            e.assist_stream_url,
            "wss://sandbox.example.com/gcx/api/v2/agentassist/stream"
        );
    }

    #[test]
    fn explicit_endpoints_override_the_region() {
        let e = endpoints(&GenesysConfig {
            region: Some("us-east-1".into()),
            login_base: Some("https://login.example.com/".into()),
            ..g()
        })
        .unwrap();
        assert_eq!(e.login_base, "https://login.example.com");
        assert_eq!(e.api_base, "https://api.mypurecloud.com");
    }

    #[test]
    fn partial_explicit_without_region_names_the_missing() {
        let e = err(GenesysConfig {
            api_base: Some("https://api.example.com".into()),
            ..g()
        });
        assert!(
            e.contains("genesys.login_base, genesys.assist_stream_url"),
            "{e}"
        );
    }

    #[test]
    fn nothing_configured() {
        let e = err(g());
        assert!(e.contains("no Genesys Cloud endpoint"), "{e}");
        assert!(e.contains("--base-url"), "{e}");
        assert!(e.contains("ap-northeast-3"), "{e}");
    }

    #[test]
    fn plain_schemes_only_for_loopback() {
        for ok in [
            "http://localhost:1",
            "http://127.0.0.1:1",
            "http://127.8.9.10",
            "http://[::1]:80",
        ] {
            assert!(
                endpoints(&GenesysConfig {
                    base_url: Some(ok.into()),
                    ..g()
                })
                .is_ok(),
                "{ok}"
            );
        }
        let e = err(GenesysConfig {
            base_url: Some("http://10.0.0.5:8080".into()),
            ..g()
        });
        assert!(e.contains("genesys.base_url"), "{e}");
        assert!(e.contains("allow_insecure"), "{e}");
        assert!(
            endpoints(&GenesysConfig {
                base_url: Some("http://10.0.0.5:8080".into()),
                allow_insecure: true,
                ..g()
            })
            .is_ok()
        );
        let e = err(GenesysConfig {
            region: Some("us-east-1".into()),
            assist_stream_url: Some("ws://stream.example.com/s".into()),
            ..g()
        });
        assert!(e.contains("genesys.assist_stream_url"), "{e}");
    }

    #[test]
    fn wrong_schemes_and_garbage() {
        let e = err(GenesysConfig {
            base_url: Some("ftp://127.0.0.1".into()),
            ..g()
        });
        assert!(e.contains("expected http or https"), "{e}");
        let e = err(GenesysConfig {
            region: Some("us-east-1".into()),
            assist_stream_url: Some("https://api.example.com/s".into()),
            ..g()
        });
        assert!(e.contains("expected ws or wss"), "{e}");
        let e = err(GenesysConfig {
            base_url: Some("not a url".into()),
            ..g()
        });
        assert!(e.contains("is not a URL"), "{e}");
    }
}

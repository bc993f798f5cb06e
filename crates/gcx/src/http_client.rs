//! The one way gcx builds an HTTP client: rustls with the `ring` provider (installed once
//! per process; `ring` keeps the cold build free of the C toolchain aws-lc needs).

use std::time::Duration;

/// The `User-Agent` of every request gcx sends.
pub const USER_AGENT: &str = concat!("gcx/", env!("CARGO_PKG_VERSION"));

/// Installs the process-wide rustls crypto provider if none is installed yet.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client with a per-request timeout, TCP_NODELAY and gcx's user agent.
pub fn build(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout).build()
}

/// The settings of [`build`], for a caller that must change one (webhook delivery turns
/// redirects off: a redirected POST may become a GET and look delivered).
pub fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .tcp_nodelay(true)
        .user_agent(USER_AGENT)
}

/// Appends each source of `error` (not `error` itself) to `text`, each after ": ": the
/// top-level text of an HTTP client's error says little ("client error (Connect)"),
/// its sources say what happened ("Connection refused").
pub fn push_sources(text: &mut String, error: &dyn std::error::Error) {
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn builds_with_the_ring_provider() {
        assert!(super::build(std::time::Duration::from_secs(1)).is_ok());
    }
}

//! Limits whose zero would make `gcx serve` refuse everything or deliver nothing: each
//! must be at least 1 (a duration: more than 0). Keys where 0 has a meaning say so in
//! `config/gcx.default.toml` and are not listed here: `serve.rate_limit_per_key` and
//! `serve.auth_failures_per_minute` (0 turns them off), `serve.drain_timeout` (stop
//! without waiting), `store.keep_finished` (keep forever).

use std::time::Duration;

use super::Config;

/// What a zero would do, per key.
const WHY_NOT_ZERO: &[(&str, &str)] = &[
    (
        "serve.max_batch",
        "every POST /v1/triggers would be refused as too large",
    ),
    (
        "serve.max_body_bytes",
        "every request with a body would be refused as too large",
    ),
    (
        "serve.request_timeout",
        "every request would time out at once",
    ),
    (
        "serve.max_connections",
        "no connection would ever be served",
    ),
    (
        "serve.header_read_timeout",
        "every connection would be closed before its request",
    ),
    (
        "serve.body_read_timeout",
        "every request body would time out at once",
    ),
    (
        "delivery.max_parallel_per_endpoint",
        "no webhook would ever be sent",
    ),
    (
        "delivery.request_timeout",
        "every webhook attempt would time out at once",
    ),
];

/// Every key of [`WHY_NOT_ZERO`] that is zero in `config`, with a message saying why
/// and what is accepted.
pub fn zero_limits(config: &Config) -> Vec<(&'static str, String)> {
    let s = &config.serve;
    let d = &config.delivery;
    let ms = |d: Duration| d.is_zero();
    let zero = [
        s.max_batch == 0,
        s.max_body_bytes == 0,
        ms(s.request_timeout),
        s.max_connections == 0,
        ms(s.header_read_timeout),
        ms(s.body_read_timeout),
        d.max_parallel_per_endpoint == 0,
        ms(d.request_timeout),
    ];
    WHY_NOT_ZERO
        .iter()
        .zip(zero)
        .filter(|(_, is_zero)| *is_zero)
        .map(|((key, why), _)| {
            let accepted =
                if super::keys::spec(key).is_some_and(|k| k.kind == super::keys::Kind::Duration) {
                    "a duration above 0 such as 10s"
                } else {
                    "1 or more"
                };
            (*key, format!("0 is refused: {why}; expected {accepted}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_have_no_zero_limit() {
        assert!(zero_limits(&Config::default()).is_empty());
    }

    #[test]
    fn every_zero_is_named() {
        let mut c = Config::default();
        c.serve.max_batch = 0;
        c.serve.max_body_bytes = 0;
        c.serve.request_timeout = Duration::ZERO;
        c.serve.max_connections = 0;
        c.serve.header_read_timeout = Duration::ZERO;
        c.serve.body_read_timeout = Duration::ZERO;
        c.delivery.max_parallel_per_endpoint = 0;
        c.delivery.request_timeout = Duration::ZERO;
        let found = zero_limits(&c);
        let keys: Vec<&str> = found.iter().map(|(k, _)| *k).collect();
        let all: Vec<&str> = WHY_NOT_ZERO.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, all);
        assert!(found[2].1.contains("a duration above 0"), "{}", found[2].1);
        assert!(found[0].1.contains("1 or more"), "{}", found[0].1);
        // Every listed key exists.
        for key in all {
            assert!(super::super::keys::spec(key).is_some(), "{key}");
        }
    }
}

//! The query of `POST /v1/triggers` as one exploded form object, so the document can say
//! what two separate parameters cannot: `timeout` is taken only with `wait=result`, and
//! only below `serve.request_timeout`. The schema's `timeout` is the part of humantime's
//! grammar a client needs (whole milliseconds or seconds, e.g. `500ms`, `5s`), bounded
//! by a pattern built for the configured limit.

use std::time::Duration;

use serde_json::{Value, json};

/// The `query` parameter object of `POST /v1/triggers` under `request_timeout`.
pub fn parameter(request_timeout: Duration) -> Value {
    json!({
        "name": "query",
        "in": "query",
        "description": "`wait=result` holds the answer until every accepted trigger has its result (or the timeout passes; then 202 with what is known). `timeout` (only with `wait=result`) is how long it may hold it: default 5s, and less than serve.request_timeout.",
        "required": false,
        "style": "form",
        "explode": true,
        "schema": {
            "type": "object",
            "properties": {
                "wait": {"type": "string", "enum": ["result"]},
                "timeout": {"type": "string", "pattern": timeout_pattern(request_timeout)},
            },
            "dependentRequired": {"timeout": ["wait"]},
            "additionalProperties": false,
        },
    })
}

/// Whole milliseconds or seconds strictly below `limit`.
pub fn timeout_pattern(limit: Duration) -> String {
    let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    // k seconds are below the limit when k * 1000 < ms.
    let secs = ms.div_ceil(1000);
    format!("^({}ms|{}s)$", below(ms), below(secs))
}

/// A regular expression (unanchored group) for the decimal integers from 0 to `n - 1`,
/// written without leading zeros; for `n == 0` one that matches nothing.
pub fn below(n: u64) -> String {
    let Some(max) = n.checked_sub(1) else {
        return "[^\\s\\S]".into();
    };
    let digits: Vec<u8> = max.to_string().bytes().map(|b| b - b'0').collect();
    let len = digits.len();
    let mut alternatives = vec!["0".to_owned()];
    // Every number with fewer digits than `max`.
    if len >= 2 {
        alternatives.push(if len == 2 {
            "[1-9]".to_owned()
        } else {
            format!("[1-9][0-9]{{0,{}}}", len - 2)
        });
    }
    // Numbers of `max`'s length: equal to it up to position i, smaller there, then any.
    for i in 0..len {
        let low = if i == 0 { 1 } else { 0 };
        let digit = digits[i];
        if digit > low {
            let prefix: String = digits[..i].iter().map(|d| char::from(b'0' + d)).collect();
            let class = if digit - 1 == low {
                char::from(b'0' + low).to_string()
            } else {
                format!("[{}-{}]", low, digit - 1)
            };
            let rest = len - i - 1;
            let tail = match rest {
                0 => String::new(),
                1 => "[0-9]".into(),
                _ => format!("[0-9]{{{rest}}}"),
            };
            alternatives.push(format!("{prefix}{class}{tail}"));
        }
    }
    if max > 0 {
        alternatives.push(max.to_string());
    }
    format!("({})", alternatives.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchored(pattern: &str) -> regex::Regex {
        regex::Regex::new(&format!("^{pattern}$")).unwrap()
    }

    #[test]
    fn below_matches_exactly_the_smaller_numbers() {
        for n in (0..=1200).chain([9_999, 10_000, 10_001, 29_999, 30_000, 30_001]) {
            let re = anchored(&below(n));
            for k in (0..=1300).chain(n.saturating_sub(3)..n + 3) {
                assert_eq!(re.is_match(&k.to_string()), k < n, "{k} below {n}: {re}");
            }
            assert!(!re.is_match("007"), "{n}: leading zeros");
        }
    }

    #[test]
    fn the_timeout_pattern_takes_what_the_server_takes() {
        let re = regex::Regex::new(&timeout_pattern(Duration::from_secs(30))).unwrap();
        for ok in ["0ms", "500ms", "29999ms", "0s", "5s", "29s"] {
            assert!(re.is_match(ok), "{ok}");
            let d = humantime::parse_duration(ok).unwrap();
            assert!(d < Duration::from_secs(30), "{ok}");
        }
        for bad in ["30000ms", "30s", "", "5", "5 s", "05s", "1m", "-1s"] {
            assert!(!re.is_match(bad), "{bad}");
        }
        let odd = regex::Regex::new(&timeout_pattern(Duration::from_millis(1500))).unwrap();
        assert!(odd.is_match("1s") && odd.is_match("1499ms"));
        assert!(!odd.is_match("2s") && !odd.is_match("1500ms"));
    }
}

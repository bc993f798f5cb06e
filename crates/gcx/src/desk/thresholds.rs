//! Pass/fail thresholds in k6's spirit (`p95_latency_ms < 200`, `state_mismatches == 0`),
//! over the metric names of PROTOCOL.md section 6 plus the report's extensions.

use gcx_protocol::webhook::ThresholdOutcome;

/// Every metric a threshold may name, with what it measures.
pub const METRICS: &[(&str, &str)] = &[
    ("total_events", "events generated"),
    ("successful_injections", "events accepted by the server"),
    ("state_mismatches", "events generated as valid but rejected"),
    (
        "avg_latency_ms",
        "mean response time from the intended send time",
    ),
    ("rejected", "events rejected"),
    (
        "expected_rejections",
        "deliberately invalid events rejected",
    ),
    (
        "unexpected_acceptances",
        "deliberately invalid events accepted",
    ),
    ("missing", "events sent but never found by query-back"),
    ("retries", "requests sent again"),
    ("p50_latency_ms", "response time p50"),
    ("p90_latency_ms", "response time p90"),
    ("p95_latency_ms", "response time p95"),
    ("p99_latency_ms", "response time p99"),
    ("p999_latency_ms", "response time p99.9"),
    ("max_latency_ms", "response time max"),
    ("service_p50_ms", "service time p50"),
    ("service_p90_ms", "service time p90"),
    ("service_p95_ms", "service time p95"),
    ("service_p99_ms", "service time p99"),
    ("service_p999_ms", "service time p99.9"),
    ("service_max_ms", "service time max"),
    ("dropped", "events the schedule could not send on time"),
    ("failed", "events in requests the server refused for good"),
    ("duplicates", "events the server reported as already seen"),
    ("events_per_second", "events accepted per second of run"),
    (
        "error_rate",
        "share of events not ending as generated (mismatch, unexpected acceptance, missing, failed)",
    ),
    (
        "async_e2e_p50_ms",
        "async: intended send to processedAt, p50",
    ),
    (
        "async_e2e_p95_ms",
        "async: intended send to processedAt, p95",
    ),
    (
        "async_e2e_p99_ms",
        "async: intended send to processedAt, p99",
    ),
];

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    const ALL: [(&'static str, Op); 6] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

/// One parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written (normalised spacing): the JUnit test case's name.
    pub expression: String,
    pub metric: &'static str,
    pub op: Op,
    pub value: f64,
}

/// Why a threshold does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error("expected `<metric> <op> <number>` with op one of < <= > >= == !=, got {0:?}")]
    Shape(String),
    #[error("unknown metric `{name}`; known metrics: {}", known())]
    UnknownMetric { name: String },
    #[error("`{0}` is not a number")]
    BadNumber(String),
}

fn known() -> String {
    METRICS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::str::FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (pos, sym, op) = Op::ALL
            .iter()
            .filter_map(|(sym, op)| text.find(sym).map(|p| (p, *sym, *op)))
            .min_by_key(|(p, sym, _)| (*p, usize::MAX - sym.len()))
            .ok_or_else(|| ThresholdError::Shape(text.to_owned()))?;
        let name = text[..pos].trim();
        let number = text[pos + sym.len()..].trim();
        if name.is_empty() || number.is_empty() {
            return Err(ThresholdError::Shape(text.to_owned()));
        }
        let metric = METRICS
            .iter()
            .map(|(n, _)| *n)
            .find(|n| *n == name)
            .ok_or_else(|| ThresholdError::UnknownMetric {
                name: name.to_owned(),
            })?;
        let value: f64 = number
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| ThresholdError::BadNumber(number.to_owned()))?;
        Ok(Threshold {
            expression: format!("{metric} {sym} {number}"),
            metric,
            op,
            value,
        })
    }
}

impl Threshold {
    /// Evaluates against the run's metrics (`lookup` knows every name in [`METRICS`]).
    pub fn evaluate(&self, lookup: impl Fn(&str) -> Option<f64>) -> ThresholdOutcome {
        let value = lookup(self.metric).unwrap_or(f64::NAN);
        ThresholdOutcome {
            name: self.metric.to_owned(),
            expression: self.expression.clone(),
            value,
            passed: self.op.holds(value, self.value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, value: f64, passed: bool) {
        let t: Threshold = text.parse().unwrap();
        let out = t.evaluate(|_| Some(value));
        assert_eq!(out.passed, passed, "{text} with {value}");
    }

    #[test]
    fn every_operator() {
        check("p95_latency_ms < 200", 199.9, true);
        check("p95_latency_ms < 200", 200.0, false);
        check("p95_latency_ms<=200", 200.0, true);
        check("missing == 0", 0.0, true);
        check("missing == 0", 1.0, false);
        check("missing != 0", 1.0, true);
        check("successful_injections > 10", 11.0, true);
        check("successful_injections >= 10", 10.0, true);
        check("error_rate < 0.01", 0.02, false);
    }

    #[test]
    fn normalises_the_expression() {
        let t: Threshold = "  p99_latency_ms<=1e3 ".parse().unwrap();
        assert_eq!(t.expression, "p99_latency_ms <= 1e3");
        assert_eq!(t.value, 1000.0);
        assert_eq!(t.op, Op::Le);
    }

    #[test]
    fn refusals_name_what_is_accepted() {
        let e = "p96_latency_ms < 1".parse::<Threshold>().unwrap_err();
        assert!(e.to_string().contains("p95_latency_ms"), "{e}");
        assert!(matches!(
            "missing".parse::<Threshold>(),
            Err(ThresholdError::Shape(_))
        ));
        assert!(matches!(
            "missing < x".parse::<Threshold>(),
            Err(ThresholdError::BadNumber(_))
        ));
        assert!(matches!(
            "< 3".parse::<Threshold>(),
            Err(ThresholdError::Shape(_))
        ));
    }

    #[test]
    fn a_missing_value_fails() {
        let t: Threshold = "missing == 0".parse().unwrap();
        assert!(!t.evaluate(|_| None).passed);
    }
}

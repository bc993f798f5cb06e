//! `junit.xml`: one test case per threshold, so CI shows which one failed and by how much.

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::summary::Summary;

/// The JUnit XML of a summary's thresholds.
pub fn render(summary: &Summary) -> Result<String, quick_junit::SerializeError> {
    let name = format!("gcx simulate {}", summary.metrics.scenario);
    let mut suite = TestSuite::new(name.clone());
    suite.add_property(Property::new("run_id", summary.metrics.run_id.clone()));
    suite.add_property(Property::new("seed", summary.run.seed.to_string()));
    suite.add_property(Property::new(
        "total_events",
        summary.metrics.total_events.to_string(),
    ));
    suite.set_time(std::time::Duration::from_secs_f64(
        summary.run.duration_s.max(0.0),
    ));
    if summary.metrics.thresholds.is_empty() {
        let mut case = TestCase::new(
            "run completed (no thresholds set)",
            TestCaseStatus::success(),
        );
        case.set_classname(summary.metrics.scenario.clone());
        suite.add_test_case(case);
    }
    for t in &summary.metrics.thresholds {
        let status = if t.passed {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!(
                "{} is {} (threshold: {})",
                t.name,
                fmt_value(t.value),
                t.expression
            ));
            s.set_type("threshold");
            s
        };
        let mut case = TestCase::new(t.expression.clone(), status);
        case.set_classname(summary.metrics.scenario.clone());
        case.add_property(Property::new("value", fmt_value(t.value)));
        suite.add_test_case(case);
    }
    let mut report = Report::new(name);
    report.add_test_suite(suite);
    report.to_string()
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desk::thresholds::Threshold;

    #[test]
    fn a_failing_threshold_is_a_failing_case() {
        let mut s = Summary::default();
        s.metrics.scenario = "smoke".into();
        s.metrics.missing = 2;
        let t: Vec<Threshold> = vec![
            "missing == 0".parse().unwrap(),
            "state_mismatches == 0".parse().unwrap(),
        ];
        s.derive(&t).unwrap();
        assert!(!s.metrics.passed);
        let xml = render(&s).unwrap();
        assert!(xml.contains("tests=\"2\""), "{xml}");
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(
            xml.contains("missing is 2 (threshold: missing == 0)"),
            "{xml}"
        );
        assert!(
            xml.contains("<testcase name=\"state_mismatches == 0\""),
            "{xml}"
        );
    }
}

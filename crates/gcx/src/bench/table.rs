//! From runs to one table: a row per figure with every run's value, the median, and
//! whether the median meets the aim.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Aim, Bench, Outcome};

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `bench.figure`, e.g. `dispatch.throughput`.
    pub name: String,
    pub figure: &'static str,
    pub unit: &'static str,
    pub aim: Option<Aim>,
    /// Every run's value (absent from a run that did not measure it).
    pub runs: Vec<f64>,
    pub median: Option<f64>,
    /// `None` without an aim or a median.
    pub meets_aim: Option<bool>,
    /// Why a figure is missing or was skipped.
    pub note: Option<String>,
}

/// The rows of one benchmark from its runs (each `Err` is that run's failure text).
pub fn rows(bench: &Bench, runs: &[Result<Outcome, String>]) -> Vec<Row> {
    bench
        .figures
        .iter()
        .map(|f| {
            let mut values = Vec::new();
            let mut notes: Vec<String> = Vec::new();
            for run in runs {
                match run {
                    Ok(Outcome::Measured(m)) => match m.get(f.id) {
                        Some(v) => values.push(v),
                        None => notes.extend(m.note.clone()),
                    },
                    Ok(Outcome::Skipped(why)) => notes.push(format!("skipped: {why}")),
                    Err(e) => notes.push(format!("failed: {e}")),
                }
            }
            notes.dedup();
            let median = median(&values);
            Row {
                name: format!("{}.{}", bench.name, f.id),
                figure: f.label,
                unit: f.unit,
                aim: f.aim,
                runs: values,
                meets_aim: f.aim.zip(median).map(|(a, m)| a.met_by(m)),
                median,
                note: (!notes.is_empty()).then(|| notes.join("; ")),
            }
        })
        .collect()
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The table as text (Markdown, so it pastes into BENCHMARKS.md as it is).
pub fn render(rows: &[Row]) -> String {
    let header = ["name", "figure", "unit", "aim", "runs", "median"];
    let lines: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let median = match (r.median, r.meets_aim) {
                (Some(m), Some(true)) => format!("{} ✓", number(m)),
                (Some(m), Some(false)) => format!("{} ✗", number(m)),
                (Some(m), None) => number(m),
                (None, _) => "–".into(),
            };
            let runs = if r.runs.is_empty() {
                r.note.clone().unwrap_or_else(|| "–".into())
            } else {
                r.runs
                    .iter()
                    .map(|v| number(*v))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            [
                r.name.clone(),
                r.figure.to_owned(),
                r.unit.to_owned(),
                r.aim.map(aim_text).unwrap_or_default(),
                runs,
                median,
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let row = |out: &mut String, cells: &[String]| {
        let mut line = String::from("|");
        for (cell, w) in cells.iter().zip(widths) {
            let pad = w - cell.chars().count();
            let _ = write!(line, " {cell}{} |", " ".repeat(pad));
        }
        out.push_str(&line);
        out.push('\n');
    };
    row(&mut out, &header.map(String::from));
    row(&mut out, &widths.map(|w| "-".repeat(w)));
    for line in &lines {
        row(&mut out, line);
    }
    for r in rows.iter().filter(|r| !r.runs.is_empty()) {
        if let Some(note) = &r.note {
            let _ = writeln!(out, "{}: {note}", r.name);
        }
    }
    out
}

fn aim_text(aim: Aim) -> String {
    match aim {
        Aim::AtLeast(v) => format!(">= {}", number(v)),
        Aim::AtMost(v) => format!("<= {}", number(v)),
    }
}

/// Large values with thousands separators and no decimals; small ones with one or two.
fn number(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Measurement, find};

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn rows_take_the_median_and_judge_the_aim_and_keep_notes() {
        let bench = find("events-1").unwrap();
        let run = |sim: f64| {
            Ok(Outcome::Measured(Measurement {
                values: vec![("simulate", sim)],
                note: Some("wrk is not installed".into()),
            }))
        };
        let rows = rows(bench, &[run(10.0), run(30.0), run(20.0)]);
        assert_eq!(rows[0].name, "events-1.simulate");
        assert_eq!(rows[0].median, Some(20.0));
        assert_eq!(rows[0].runs, [10.0, 30.0, 20.0]);
        assert_eq!(rows[1].median, None);
        assert_eq!(rows[1].note.as_deref(), Some("wrk is not installed"));
        let text = render(&rows);
        assert!(text.contains("| events-1.simulate"), "{text}");
        assert!(text.contains("10.0 / 30.0 / 20.0"), "{text}");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(21_034.4), "21,034");
        assert_eq!(number(97.26), "97.3");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(250.0), "250");
    }
}

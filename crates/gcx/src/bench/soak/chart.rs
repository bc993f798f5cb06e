//! One time-series chart as inline SVG (no script): lines over seconds into the run,
//! shaded bands (CRM outages, the warm-up), vertical marks (closings, a database restart)
//! and horizontal guides (the flatness medians and limit). Colours are the page style's
//! CSS variables, so the chart follows its light and dark themes.

use std::fmt::Write as _;

use crate::desk::report::html::escape_html;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// One line: points `(seconds, value)`; a `None` value breaks the line there.
pub struct Line {
    pub label: String,
    /// A CSS colour, e.g. `var(--info)`.
    pub colour: &'static str,
    pub points: Vec<(f64, Option<f64>)>,
}

/// A shaded span of time.
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub colour: &'static str,
    pub label: Option<String>,
}

/// A moment marked across the chart.
pub struct Mark {
    pub at: f64,
    pub colour: &'static str,
    pub label: String,
}

/// A level marked across the chart.
pub struct Guide {
    pub value: f64,
    pub colour: &'static str,
    pub label: String,
}

/// A chart; [`Chart::svg`] draws it.
pub struct Chart {
    /// Unit shown at the top of the value axis.
    pub unit: &'static str,
    /// The time axis runs from 0 to this.
    pub x_max: f64,
    pub lines: Vec<Line>,
    pub bands: Vec<Band>,
    pub marks: Vec<Mark>,
    pub guides: Vec<Guide>,
}

impl Chart {
    fn y_max(&self) -> f64 {
        let data = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|(_, v)| *v));
        let guides = self.guides.iter().map(|g| g.value);
        nice_ceiling(data.chain(guides).fold(0.0, f64::max))
    }

    fn x(&self, t: f64) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * (t / self.x_max.max(1e-9)).clamp(0.0, 1.0)
    }

    fn y(&self, v: f64, y_max: f64) -> f64 {
        let bottom = HEIGHT - BOTTOM;
        bottom - (bottom - TOP) * (v / y_max).clamp(0.0, 1.0)
    }

    /// The chart as one `<svg>` element.
    pub fn svg(&self) -> String {
        let y_max = self.y_max();
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">"#
        );
        let (top, bottom) = (TOP, HEIGHT - BOTTOM);
        for b in &self.bands {
            let (x0, x1) = (self.x(b.from), self.x(b.to));
            let _ = write!(
                s,
                r#"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{:.1}" style="fill:{};opacity:.12"/>"#,
                (x1 - x0).max(0.5),
                bottom - top,
                b.colour
            );
            // At the foot of the band, clear of the guides' labels at the top; only
            // where the band is wide enough to hold it.
            if let Some(label) = b.label.as_ref().filter(|_| x1 - x0 >= 40.0) {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                    x0 + 4.0,
                    bottom - 5.0,
                    escape_html(label)
                );
            }
        }
        for i in 0..=4 {
            let v = y_max * f64::from(i) / 4.0;
            let y = self.y(v, y_max);
            let class = if i == 0 { "axis" } else { "grid-line" };
            let _ = write!(
                s,
                r#"<line class="{class}" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                number(v)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{LEFT}" y="{:.1}" text-anchor="start">{}</text>"#,
            top - 2.0,
            escape_html(self.unit)
        );
        let step = time_step(self.x_max);
        let mut t = 0.0;
        while t <= self.x_max + 1e-9 {
            let x = self.x(t);
            let _ = write!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                bottom + 16.0,
                clock(t)
            );
            t += step;
        }
        // The highest guide's label above its line, the others' below theirs, so two
        // close guides (a median and its limit) keep their labels apart.
        let highest = self.guides.iter().map(|g| g.value).fold(f64::MIN, f64::max);
        for g in &self.guides {
            let y = self.y(g.value, y_max);
            let label_y = if g.value >= highest {
                y - 4.0
            } else {
                y + 13.0
            };
            let _ = write!(
                s,
                r#"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" style="stroke:{};stroke-dasharray:6 4;stroke-width:1"/><text x="{:.1}" y="{label_y:.1}" text-anchor="end">{}</text>"#,
                WIDTH - RIGHT,
                g.colour,
                WIDTH - RIGHT - 4.0,
                escape_html(&g.label)
            );
        }
        for m in &self.marks {
            let x = self.x(m.at);
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{bottom}" style="stroke:{};stroke-width:1;stroke-dasharray:2 2"><title>{}</title></line>"#,
                m.colour,
                escape_html(&m.label)
            );
        }
        for l in &self.lines {
            let mut d = String::new();
            let mut pen_down = false;
            for (t, v) in &l.points {
                match v {
                    Some(v) => {
                        let cmd = if pen_down { 'L' } else { 'M' };
                        let _ = write!(d, "{cmd}{:.1},{:.1}", self.x(*t), self.y(*v, y_max));
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            let _ = write!(
                s,
                r#"<path d="{d}" style="fill:none;stroke:{};stroke-width:1.6;stroke-linejoin:round"><title>{}</title></path>"#,
                l.colour,
                escape_html(&l.label)
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

/// A time-axis step giving 4 to 12 labels.
fn time_step(span: f64) -> f64 {
    [
        5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    ]
    .into_iter()
    .find(|s| span / s <= 12.0)
    .unwrap_or(7200.0)
}

/// `m:ss`.
pub(crate) fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// An axis label: whole numbers as they are, small ones with a decimal.
fn number(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_and_steps_are_round() {
        assert_eq!(nice_ceiling(0.3), 1.0);
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(2_100.0), 2_500.0);
        assert_eq!(time_step(40.0), 5.0);
        assert_eq!(time_step(180.0), 15.0);
        assert_eq!(time_step(1_800.0), 300.0);
        assert_eq!(clock(125.0), "2:05");
    }

    #[test]
    fn a_gap_breaks_the_line_and_labels_are_escaped() {
        let chart = Chart {
            unit: "MiB",
            x_max: 30.0,
            lines: vec![Line {
                label: "<rss>".into(),
                colour: "var(--info)",
                points: vec![
                    (0.0, Some(1.0)),
                    (10.0, None),
                    (20.0, Some(2.0)),
                    (30.0, Some(3.0)),
                ],
            }],
            bands: vec![Band {
                from: 5.0,
                to: 10.0,
                colour: "var(--bad)",
                label: Some("CRM down".into()),
            }],
            marks: vec![],
            guides: vec![],
        };
        let svg = chart.svg();
        let path = svg
            .split("<path d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert!(svg.contains("&lt;rss&gt;") && !svg.contains("<rss>"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}

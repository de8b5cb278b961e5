//! Bar charts as inline SVG, drawn on the server: no chart library, no JavaScript, and the
//! chart is in the page the moment it loads. Colours come from CSS classes (`bar`, `bar-err`),
//! so the stylesheet decides them.

use std::fmt::Write as _;

use super::html::esc;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 10.0;

/// One bar: its label and up to two stacked values (the second drawn as errors on top).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Label under the bar (every few bars when there are many).
    pub label: String,
    /// Main value.
    pub value: f64,
    /// Stacked on top (errors); 0 for none.
    pub extra: f64,
}

/// A round-ish upper bound for the axis.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn axis_label(value: f64) -> String {
    if value >= 1_000_000.0 {
        format!("{:.1}M", value / 1_000_000.0)
    } else if value >= 1_000.0 {
        format!("{:.1}k", value / 1_000.0)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// An SVG bar chart of `bars`, titled `title` (for screen readers and tooltips).
pub fn bar_chart(testid: &str, title: &str, bars: &[Bar]) -> String {
    let max = nice_max(bars.iter().map(|b| b.value + b.extra).fold(0.0, f64::max));
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let mut svg = format!(
        r#"<svg class="chart" data-testid="{testid}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = esc(title)
    );
    for i in 0..=4 {
        let value = max * f64::from(i) / 4.0;
        let y = TOP + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - 8.0,
            LEFT - 6.0,
            y + 4.0,
            axis_label(value)
        );
    }
    if bars.is_empty() {
        svg.push_str("</svg>");
        return svg;
    }
    let slot = plot_w / bars.len() as f64;
    let bar_w = (slot * 0.8).clamp(1.0, 40.0);
    let label_every = (bars.len() / 12).max(1);
    for (i, bar) in bars.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let h = plot_h * bar.value / max;
        let y = TOP + plot_h - h;
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}"><title>{}: {}</title></rect>"#,
            esc(&bar.label),
            axis_label(bar.value)
        );
        if bar.extra > 0.0 {
            let eh = plot_h * bar.extra / max;
            let _ = write!(
                svg,
                r#"<rect class="bar-err" x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{eh:.1}"><title>{}: {}</title></rect>"#,
                y - eh,
                esc(&bar.label),
                axis_label(bar.extra)
            );
        }
        if i % label_every == 0 {
            let _ = write!(
                svg,
                r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                x + bar_w / 2.0,
                HEIGHT - 10.0,
                esc(&short_label(&bar.label))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// `2026-01-31` -> `01-31`, `2026-01-31T14` -> `14h`, anything long -> its first 10 chars.
fn short_label(label: &str) -> String {
    if label.len() == 13 && label.as_bytes().get(10) == Some(&b'T') {
        format!("{}h", &label[11..])
    } else if label.len() == 10 && label.as_bytes().get(4) == Some(&b'-') {
        label[5..].to_owned()
    } else {
        label.chars().take(10).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_a_round_maximum_and_labels_are_escaped() {
        let svg = bar_chart(
            "c",
            "t",
            &[
                Bar {
                    label: "<a>".into(),
                    value: 30.0,
                    extra: 0.0,
                },
                Bar {
                    label: "2026-01-31".into(),
                    value: 70.0,
                    extra: 10.0,
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("&lt;a&gt;") && !svg.contains("<a>"));
        assert!(svg.contains(">01-31<"));
        assert!(svg.contains(r#"class="bar-err""#));
        assert_eq!(nice_max(80.0), 100.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(1200.0), 2000.0);
    }
}

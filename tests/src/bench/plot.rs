//! `scripts/bench --plot`: SVG line charts of the figures (plotters' SVG
//! backend, no font files: text goes into the SVG as `<text>` and the
//! viewer renders it). Owns the output directory the flag sets and two
//! chart shapes: [`lines`] (y against x, each axis linear or logarithmic)
//! and [`cdf`] (the cumulative distribution of samples).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// Where charts go; unset unless `--plot` was given (then every chart
/// function below writes there, and without it they do nothing).
static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Turns `--plot` on: charts are written to `dir` (created if missing).
pub fn enable(dir: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    DIR.set(dir)
        .map_err(|_| anyhow!("the plot directory was already set"))
}

/// The chart directory when `--plot` was given.
pub fn dir() -> Option<&'static Path> {
    DIR.get().map(PathBuf::as_path)
}

/// One axis of a [`lines`] chart.
#[derive(Debug, Clone, Copy)]
pub struct Axis<'a> {
    pub label: &'a str,
    /// Logarithmic (every value must then be > 0; others are left out).
    pub log: bool,
    /// Whole numbers only (counts such as round trips): a tick per unit.
    pub integer: bool,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    Dashed,
}

/// The marker on each point of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    None,
    Circle,
    Triangle,
}

/// One line of a [`lines`] chart: its legend label, colour, stroke,
/// marker and points (drawn in the order given). Series are drawn in
/// order, so a later one lies on top where two coincide.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    pub stroke: Stroke,
    /// Line width in pixels: a wider line under a narrower one keeps both
    /// visible where they coincide.
    pub width: u32,
    pub marker: Marker,
    pub points: Vec<(f64, f64)>,
}

/// Colours that stay apart on white and for the common colour blindnesses
/// (Okabe-Ito).
pub const BLUE: RGBColor = RGBColor(0, 114, 178);
pub const SKY: RGBColor = RGBColor(86, 180, 233);
pub const VERMILION: RGBColor = RGBColor(213, 94, 0);
pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
pub const GREEN: RGBColor = RGBColor(0, 158, 115);
pub const GREY: RGBColor = RGBColor(120, 120, 120);

const SIZE: (u32, u32) = (800, 500);

/// Draws `series` as lines with markers into an SVG at `path`.
pub fn lines(
    path: &Path,
    title: &str,
    x: Axis<'_>,
    y: Axis<'_>,
    series: &[Series],
) -> anyhow::Result<()> {
    let kept: Vec<Series> = series
        .iter()
        .map(|s| Series {
            points: s
                .points
                .iter()
                .copied()
                .filter(|&(px, py)| (!x.log || px > 0.0) && (!y.log || py > 0.0))
                .collect(),
            ..s.clone()
        })
        .collect();
    let all = || kept.iter().flat_map(|s| s.points.iter().copied());
    let (x_lo, x_hi) = span(all().map(|p| p.0), x.log);
    let (y_lo, y_hi) = span(all().map(|p| p.1), y.log);
    // One generic drawing routine; plotters gives log and linear ranges
    // different types, hence the four arms.
    match (x.log, y.log) {
        (false, false) => draw(path, title, x, y, x_lo..x_hi, y_lo..y_hi, &kept),
        (true, false) => draw(
            path,
            title,
            x,
            y,
            (x_lo..x_hi).log_scale(),
            y_lo..y_hi,
            &kept,
        ),
        (false, true) => draw(
            path,
            title,
            x,
            y,
            x_lo..x_hi,
            (y_lo..y_hi).log_scale(),
            &kept,
        ),
        (true, true) => draw(
            path,
            title,
            x,
            y,
            (x_lo..x_hi).log_scale(),
            (y_lo..y_hi).log_scale(),
            &kept,
        ),
    }
}

/// The cumulative distribution of each sample set (e.g. latencies in ms):
/// x the value, y the share of samples at or below it, log x.
pub fn cdf(
    path: &Path,
    title: &str,
    x_label: &str,
    samples: &[(String, Vec<f64>)],
) -> anyhow::Result<()> {
    const COLORS: [RGBColor; 5] = [BLUE, VERMILION, GREEN, ORANGE, SKY];
    let series: Vec<Series> = samples
        .iter()
        .enumerate()
        .map(|(i, (label, values))| {
            let points = cdf_points(values);
            Series {
                label: format!("{label} ({} samples)", points.len()),
                color: COLORS[i % COLORS.len()],
                stroke: Stroke::Solid,
                width: 2,
                marker: Marker::None,
                points,
            }
        })
        .collect();
    lines(
        path,
        title,
        Axis {
            label: x_label,
            log: true,
            integer: false,
        },
        Axis {
            label: "share at or below",
            log: false,
            integer: false,
        },
        &series,
    )
}

/// The empirical CDF of the finite `values`: (value, share of values at or
/// below it), sorted by value.
fn cdf_points(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len().max(1) as f64;
    v.iter()
        .enumerate()
        .map(|(j, &x)| (x, (j + 1) as f64 / n))
        .collect()
}

/// The gossip bench's publish-to-applied latencies (ms) as a CDF in
/// `gossip_latency_cdf.svg`, when `--plot` was given; nothing otherwise.
pub fn gossip_cdf(label: &str, latencies_ms: &[f64]) -> anyhow::Result<()> {
    let Some(dir) = dir() else {
        return Ok(());
    };
    cdf(
        &dir.join("gossip_latency_cdf.svg"),
        "Gossip: publish to stored, every receiving node",
        "latency (ms, log)",
        &[(label.to_owned(), latencies_ms.to_vec())],
    )
}

/// A tick label: whole numbers with thousands separators (`20,000`), others
/// with up to three significant decimals (`0.05`).
pub fn number(v: &f64) -> String {
    let v = *v;
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let digits = format!("{}", v.abs() as u64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The axis range covering `values` with a margin (a factor on a log axis).
fn span(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return if log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        (lo / 1.5, hi * 1.5)
    } else {
        let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.5 };
        // Counts and shares start at zero.
        (if lo >= 0.0 { 0.0 } else { lo - pad }, hi + pad)
    }
}

#[allow(clippy::too_many_arguments)]
fn draw<X, Y>(
    path: &Path,
    title: &str,
    x: Axis<'_>,
    y: Axis<'_>,
    x_range: X,
    y_range: Y,
    series: &[Series],
) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)
        .map_err(|e| err(&e))?;
    let y_ticks = if y.integer {
        // A tick per unit, up to a dozen.
        (chart.y_range().end.ceil().max(1.0) as usize + 1).min(12)
    } else {
        10
    };
    chart
        .configure_mesh()
        .x_desc(x.label)
        .y_desc(y.label)
        .x_label_formatter(&number)
        .y_label_formatter(&number)
        .y_labels(y_ticks)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(&e))?;
    for s in series {
        let color = s.color;
        let style = ShapeStyle::from(&color).stroke_width(s.width);
        let points = s.points.clone();
        match s.marker {
            Marker::None => {}
            Marker::Circle => {
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| err(&e))?;
            }
            Marker::Triangle => {
                chart
                    .draw_series(
                        points
                            .iter()
                            .map(|&p| TriangleMarker::new(p, 5, color.filled())),
                    )
                    .map_err(|e| err(&e))?;
            }
        }
        let drawn = match s.stroke {
            Stroke::Solid => chart
                .draw_series(LineSeries::new(points.iter().copied(), style))
                .map_err(|e| err(&e))?,
            Stroke::Dashed => chart
                .draw_series(DashedLineSeries::new(points.iter().copied(), 6, 4, style))
                .map_err(|e| err(&e))?,
        };
        // Two segments, with a gap when the line is dashed.
        let (a, b) = if s.stroke == Stroke::Dashed {
            (7, 11)
        } else {
            (9, 9)
        };
        drawn.label(s.label.clone()).legend(move |(lx, ly)| {
            EmptyElement::at((lx, ly))
                + PathElement::new(vec![(0, 0), (a, 0)], style)
                + PathElement::new(vec![(b, 0), (18, 0)], style)
        });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tick labels read as numbers: thousands separated, no trailing
    /// zeros, so a log axis shows `20,000` rather than `20000.0`.
    #[test]
    fn tick_labels_are_plain_numbers() {
        assert_eq!(number(&20_000.0), "20,000");
        assert_eq!(number(&1_000_000.0), "1,000,000");
        assert_eq!(number(&100.0), "100");
        assert_eq!(number(&-1_500.0), "-1,500");
        assert_eq!(number(&0.5), "0.5");
        assert_eq!(number(&0.05), "0.05");
    }

    /// A chart is a complete SVG holding every series' legend label, with
    /// points a log axis cannot show (0) left out instead of failing.
    #[test]
    fn lines_writes_an_svg_with_every_series() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("chart.svg");
        let series = |label: &str, color, stroke| Series {
            label: label.into(),
            color,
            stroke,
            width: 2,
            marker: Marker::Circle,
            points: vec![(0.0, 5.0), (1.0, 10.0), (100.0, 1_000.0)],
        };
        lines(
            &path,
            "title here",
            Axis {
                label: "x",
                log: true,
                integer: false,
            },
            Axis {
                label: "y",
                log: true,
                integer: false,
            },
            &[
                series("first line", BLUE, Stroke::Solid),
                series("second line", ORANGE, Stroke::Dashed),
            ],
        )?;
        let svg = std::fs::read_to_string(&path)?;
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in ["title here", "first line", "second line"] {
            assert!(svg.contains(text), "{text} missing");
        }
        Ok(())
    }

    /// The CDF climbs from 1/n at the smallest sample to 1 at the largest,
    /// whatever order the samples came in, leaving out non-finite ones.
    #[test]
    fn cdf_climbs_to_the_largest_sample() -> anyhow::Result<()> {
        let points = cdf_points(&[30.0, 10.0, f64::NAN, 20.0, 40.0]);
        assert_eq!(
            points,
            vec![(10.0, 0.25), (20.0, 0.5), (30.0, 0.75), (40.0, 1.0)]
        );
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cdf.svg");
        cdf(
            &path,
            "latency",
            "ms",
            &[("run".into(), vec![30.0, 10.0, 20.0])],
        )?;
        assert!(std::fs::read_to_string(&path)?.contains("run (3 samples)"));
        Ok(())
    }
}

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
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    Dashed,
}

/// One line of a [`lines`] chart: its legend label, colour, stroke and
/// points (drawn in the order given, each with a marker).
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    pub stroke: Stroke,
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
        (true, false) => draw(path, title, x, y, (x_lo..x_hi).log_scale(), y_lo..y_hi, &kept),
        (false, true) => draw(path, title, x, y, x_lo..x_hi, (y_lo..y_hi).log_scale(), &kept),
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
pub fn cdf(path: &Path, title: &str, x_label: &str, samples: &[(String, Vec<f64>)]) -> anyhow::Result<()> {
    const COLORS: [RGBColor; 5] = [BLUE, VERMILION, GREEN, ORANGE, SKY];
    let series: Vec<Series> = samples
        .iter()
        .enumerate()
        .map(|(i, (label, values))| {
            let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len().max(1) as f64;
            Series {
                label: format!("{label} ({} samples)", v.len()),
                color: COLORS[i % COLORS.len()],
                stroke: Stroke::Solid,
                points: v
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| (x, (j + 1) as f64 / n))
                    .collect(),
            }
        })
        .collect();
    lines(
        path,
        title,
        Axis { label: x_label, log: true },
        Axis { label: "share of deliveries at or below", log: false },
        &series,
    )
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
        let pad = ((hi - lo) * 0.05).max(0.5);
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
    chart
        .configure_mesh()
        .x_desc(x.label)
        .y_desc(y.label)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(&e))?;
    for s in series {
        let color = s.color;
        let style = ShapeStyle::from(&color).stroke_width(2);
        let points = s.points.clone();
        let drawn = match s.stroke {
            Stroke::Solid => chart
                .draw_series(LineSeries::new(points.iter().copied(), style).point_size(3))
                .map_err(|e| err(&e))?,
            Stroke::Dashed => {
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| err(&e))?;
                chart
                    .draw_series(DashedLineSeries::new(points.iter().copied(), 6, 4, style))
                    .map_err(|e| err(&e))?
            }
        };
        let dashed = s.stroke == Stroke::Dashed;
        // Two segments, with a gap when the line is dashed.
        let (a, b) = if dashed { (7, 11) } else { (9, 9) };
        drawn.label(s.label.clone()).legend(move |(lx, ly)| {
            let style = ShapeStyle::from(&color).stroke_width(2);
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

//! The charts of BENCHMARKS.md, drawn as SVG by `plotters` from the figures
//! the runs record in `docs/benchmarks/figures.json`: `scripts/bench.sh`
//! writes the suite's part (the open-loop sweep, the ingestion rates),
//! `scripts/compare-go.sh` the comparison's (saturation and CPU per request
//! of each target, the sweep of both suites), each keeping the other's.
//!
//! Text is written as SVG `<text>` with a generic font family and laid out
//! by plotters' own estimate of its size, so no font is read at run time.
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::{
    coord::{Shift, ranged1d::SegmentValue},
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};
use serde::{Deserialize, Serialize};

use crate::sweep::{Curve, Step, Sweep};

/// Where and on what a set of figures was measured, for the captions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `2026-11-24 16:43 UTC`.
    pub date: String,
    pub commit: String,
    /// `2 cores (AMD EPYC)`.
    pub machine: String,
    /// What else the reader should know (figures taken from an earlier report, a quick run...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Provenance {
    pub fn caption(&self) -> String {
        let note = self.note.as_deref().map_or_else(String::new, |note| format!("; {note}"));
        format!("{}, commit {}, {}{note}", self.date, self.commit, self.machine)
    }
}

/// A figure of one named thing (a store, a target).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    pub name: String,
    pub value: f64,
}

/// Events/s a fresh rating instance applies the full topic at, per store,
/// and the bare consumer's read rate of the same topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ingestion {
    pub bare_consumer_eps: f64,
    pub stores: Vec<Bar>,
}

/// What `scripts/bench.sh` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteFigures {
    pub run: Provenance,
    pub sweep: Option<Sweep>,
    pub ingestion: Option<Ingestion>,
}

/// One target of the comparison at its best load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetFigures {
    pub name: String,
    /// The h2load load its best throughput came at (`-c16 -m8`).
    pub load: String,
    pub saturation_rps: f64,
    pub cpu_us_per_request: f64,
}

/// What `scripts/compare-go.sh` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonFigures {
    pub run: Provenance,
    pub targets: Vec<TargetFigures>,
    pub sweep: Option<Sweep>,
}

/// Everything the charts are drawn from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub suite: Option<SuiteFigures>,
    pub comparison: Option<ComparisonFigures>,
}

impl Figures {
    pub const FILE: &str = "figures.json";

    /// The figures in `dir`, none if it has no file yet.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(Self::FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| format!("read {}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(error).with_context(|| format!("read {}", path.display())),
        }
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(Self::FILE);
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("write {}", path.display()))
    }
}

/// A chart written: its file name and what it shows (the image's alt text).
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub file: &'static str,
    pub title: &'static str,
}

pub const LATENCY: Chart = Chart {
    file: "latency-vs-load.svg",
    title: "GetMovieDetails latency percentiles against offered load (open loop)",
};
pub const LATENCY_GO: Chart = Chart {
    file: "latency-vs-load-go.svg",
    title: "GetMovieDetails p50 and p99 against offered load: this suite and the pooled Go suite (open loop)",
};
pub const SATURATION: Chart = Chart {
    file: "saturation-and-cpu.svg",
    title: "Saturation throughput and CPU per request: this suite, the Go suite and the floor (h2load)",
};
pub const INGESTION: Chart = Chart {
    file: "ingestion.svg",
    title: "Ingestion: apply rate of a fresh rating instance per store, and the bare consumer",
};

/// The SVG of every chart the figures hold data for.
pub fn render_all(figures: &Figures) -> anyhow::Result<Vec<(Chart, String)>> {
    let mut charts = Vec::new();
    if let Some(suite) = &figures.suite
        && let Some(sweep) = &suite.sweep
    {
        charts.push((LATENCY, latency_chart(sweep, &suite.run)?));
    }
    if let Some(comparison) = &figures.comparison {
        if let Some(sweep) = &comparison.sweep {
            charts.push((LATENCY_GO, latency_comparison_chart(sweep, &comparison.run)?));
        }
        if !comparison.targets.is_empty() {
            charts.push((SATURATION, saturation_chart(&comparison.targets, &comparison.run)?));
        }
    }
    if let Some(ingestion) = figures.suite.as_ref().and_then(|suite| suite.ingestion.as_ref().map(|i| (i, &suite.run)))
    {
        charts.push((INGESTION, ingestion_chart(ingestion.0, ingestion.1)?));
    }
    Ok(charts)
}

/// Writes every chart the figures hold data for into `dir`; returns them
/// with their paths.
pub fn write_all(figures: &Figures, dir: &Path) -> anyhow::Result<Vec<(Chart, PathBuf)>> {
    std::fs::create_dir_all(dir)?;
    render_all(figures)?
        .into_iter()
        .map(|(chart, svg)| {
            let path = dir.join(chart.file);
            std::fs::write(&path, svg).with_context(|| format!("write {}", path.display()))?;
            Ok((chart, path))
        })
        .collect()
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 560;
/// The band under the plot that holds the caption, two lines at most.
const CAPTION_HEIGHT: u32 = 44;
/// Characters of a caption line: about the chart's width at the caption's size.
const CAPTION_LINE: usize = 130;
const FONT: &str = "sans-serif";
/// Colours that stay apart for readers with a colour vision deficiency (Okabe and Ito).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

/// The SVG of a chart: `plot` draws on the area above the caption band,
/// which holds `run`'s caption.
fn draw(
    run: &Provenance,
    plot: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        plot(&canvas(&root, run)?)?;
        root.present()?;
    }
    Ok(svg)
}

/// A drawing area of the chart's size on `svg`, white, with `run`'s
/// caption in the band at its foot; returns the area above it.
fn canvas<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    run: &Provenance,
) -> anyhow::Result<DrawingArea<SVGBackend<'a>, Shift>> {
    root.fill(&WHITE)?;
    let (plot, foot) = root.split_vertically(HEIGHT - CAPTION_HEIGHT);
    for (line, text) in caption_lines(&format!("Measured {}", run.caption())).iter().enumerate() {
        let y = 6 + 18 * i32::try_from(line).unwrap_or(0);
        foot.draw(&Text::new(text.as_str(), (16, y), (FONT, 14).into_font().color(&BLACK)))?;
    }
    Ok(plot)
}

/// `caption` in lines of at most [`CAPTION_LINE`] characters, broken between words.
fn caption_lines(caption: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in caption.split(' ') {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= CAPTION_LINE => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// `0.25`, `1`, `20`: up to three decimals, no trailing zeros.
fn trimmed(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn milliseconds(micros: u64) -> f64 {
    micros.max(1) as f64 / 1000.0
}

/// The latency axis's bounds (ms, logarithmic): a decade under the lowest
/// latency to a little over the highest.
fn latency_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values.fold((f64::INFINITY, 0.0_f64), |(low, high), value| (low.min(value), high.max(value)));
    if !low.is_finite() {
        return 0.01..1.0;
    }
    let low = 10_f64.powf(low.log10().floor());
    low..(high * 1.5).max(low * 10.0)
}

fn rate_range(sweep: &Sweep) -> std::ops::Range<f64> {
    let high = sweep.curves.iter().flat_map(|curve| &curve.steps).map(|step| step.offered_rps).fold(0.0, f64::max);
    0.0..(high * 1.05).max(1.0)
}

/// One line of a latency chart: its points in requests/s and ms.
struct Series {
    label: String,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// A latency of a step, in µs.
type Percentile = fn(&Step) -> u64;

fn series(curve: &Curve, label: String, colour: RGBColor, percentile: Percentile) -> Series {
    let points = curve.steps.iter().map(|step| (step.offered_rps, milliseconds(percentile(step)))).collect();
    Series { label, colour, points }
}

/// Draws `series` on a chart of latency against offered load.
fn latency_plot(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    series: &[Series],
) -> anyhow::Result<()> {
    let y = latency_range(series.iter().flat_map(|series| series.points.iter().map(|point| point.1)));
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered load, requests/s")
        .y_desc("latency, ms (log scale)")
        .x_label_formatter(&|rate| format!("{rate:.0}"))
        .y_label_formatter(&|ms| trimmed(*ms))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()?;
    for Series { label, colour, points } in series {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)).point_size(3))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}

/// The knee of `curve` for a legend: `knee 28000 req/s (70 % of saturation)`.
fn knee_label(curve: &Curve, saturation_rps: f64) -> String {
    curve.knee().map_or_else(
        || "no step below the knee".to_owned(),
        |step| {
            format!(
                "knee {:.0} req/s ({:.0} % of saturation)",
                step.offered_rps,
                100.0 * step.offered_rps / saturation_rps
            )
        },
    )
}

/// This suite's percentiles (p50, p90, p99, p99.9) against the offered load.
pub fn latency_chart(sweep: &Sweep, run: &Provenance) -> anyhow::Result<String> {
    let curve = sweep.curves.first().context("a sweep with no curve")?;
    draw(run, |plot| {
        let percentiles: [(&str, Percentile); 4] = [
            ("p50", |step| step.p50_us),
            ("p90", |step| step.p90_us),
            ("p99", |step| step.p99_us),
            ("p99.9", |step| step.p999_us),
        ];
        let lines: Vec<Series> = percentiles
            .iter()
            .zip(PALETTE)
            .map(|((label, percentile), colour)| series(curve, format!("{} {label}", curve.name), colour, *percentile))
            .collect();
        let title = format!(
            "GetMovieDetails latency against offered load, saturation {:.0} req/s, {}",
            sweep.saturation_rps,
            knee_label(curve, sweep.saturation_rps)
        );
        latency_plot(plot, &title, rate_range(sweep), &lines)?;
        Ok(())
    })
}

/// p50 and p99 of every curve (this suite, pooled Go) against the offered load.
pub fn latency_comparison_chart(sweep: &Sweep, run: &Provenance) -> anyhow::Result<String> {
    draw(run, |plot| {
        let mut lines = Vec::new();
        for (curve, colours) in sweep.curves.iter().zip(PALETTE.chunks(2)) {
            let knee = knee_label(curve, sweep.saturation_rps);
            lines.push(series(curve, format!("{} p50", curve.name), colours[0], |step| step.p50_us));
            lines.push(series(curve, format!("{} p99, {knee}", curve.name), colours[1], |step| step.p99_us));
        }
        let title =
            format!("GetMovieDetails latency against offered load (saturation {:.0} req/s)", sweep.saturation_rps);
        latency_plot(plot, &title, rate_range(sweep), &lines)?;
        Ok(())
    })
}

/// A bar chart of `bars` on `area`: the value over each bar.
fn bar_plot(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    y_desc: &str,
    bars: &[(String, f64, RGBColor)],
) -> anyhow::Result<()> {
    let high = bars.iter().map(|bar| bar.1).fold(0.0, f64::max).max(1.0) * 1.2;
    let names: Vec<String> = bars.iter().map(|bar| bar.0.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 16))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(72)
        // A segmented range holds one segment past its end.
        .build_cartesian_2d((0..bars.len().saturating_sub(1)).into_segmented(), 0.0..high)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_desc)
        .x_label_formatter(&|value| match value {
            SegmentValue::CenterOf(index) | SegmentValue::Exact(index) => {
                names.get(*index).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|value| format!("{value:.0}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(index, (_, value, colour))| {
        let mut bar = Rectangle::new(
            [(SegmentValue::Exact(index), 0.0), (SegmentValue::Exact(index + 1), *value)],
            colour.filled(),
        );
        bar.set_margin(0, 0, 12, 12);
        bar
    }))?;
    let above = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(bars.iter().enumerate().map(|(index, (_, value, _))| {
        Text::new(format!("{value:.0}"), (SegmentValue::CenterOf(index), value + high * 0.01), above.clone())
    }))?;
    Ok(())
}

/// Saturation throughput and CPU per request of each target, side by side.
pub fn saturation_chart(targets: &[TargetFigures], run: &Provenance) -> anyhow::Result<String> {
    draw(run, |plot| {
        let (left, right) = plot.split_horizontally(WIDTH / 2);
        let bars = |value: fn(&TargetFigures) -> f64| -> Vec<(String, f64, RGBColor)> {
            targets
                .iter()
                .zip(PALETTE.iter().cycle())
                .map(|(target, colour)| (target.name.clone(), value(target), *colour))
                .collect()
        };
        bar_plot(
            &left,
            "Saturation throughput (best h2load load)",
            "requests/s",
            &bars(|target| target.saturation_rps),
        )?;
        bar_plot(&right, "CPU per request at that load", "CPU µs/request", &bars(|target| target.cpu_us_per_request))?;
        Ok(())
    })
}

/// The apply rate of each store and the bare consumer's read rate.
pub fn ingestion_chart(ingestion: &Ingestion, run: &Provenance) -> anyhow::Result<String> {
    draw(run, |plot| {
        let mut bars = vec![("bare consumer".to_owned(), ingestion.bare_consumer_eps, RGBColor(120, 120, 120))];
        bars.extend(
            ingestion
                .stores
                .iter()
                .zip(PALETTE)
                .map(|(store, colour)| (format!("rating on {}", store.name), store.value, colour)),
        );
        bar_plot(plot, "Applying the full ratings topic: a fresh rating instance per store", "events/s", &bars)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Provenance {
        Provenance {
            date: "2026-11-24 16:43 UTC".into(),
            commit: "97f016c".into(),
            machine: "2 cores (AMD EPYC)".into(),
            note: None,
        }
    }

    fn step(offered_rps: f64, p50_us: u64) -> Step {
        Step {
            offered_rps,
            achieved_rps: offered_rps,
            p50_us,
            p90_us: p50_us * 2,
            p99_us: p50_us * 4,
            p999_us: p50_us * 8,
            errors: 0,
            machine_busy: Some(0.5),
        }
    }

    fn curve(name: &str, p50s: &[u64]) -> Curve {
        Curve {
            name: name.into(),
            steps: p50s.iter().enumerate().map(|(k, p50)| step(4000.0 * (k + 1) as f64, *p50)).collect(),
        }
    }

    fn colour(colour: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2)
    }

    /// The SVG parsed: the text of every `<text>`, and the (stroke, number of points) of every `<polyline>`,
    /// the fill of every `<rect>`.
    struct Parsed {
        texts: Vec<String>,
        polylines: Vec<(String, usize)>,
        rect_fills: Vec<String>,
    }

    fn parse(svg: &str) -> Parsed {
        let document = roxmltree::Document::parse(svg).expect("the chart is well-formed XML");
        assert_eq!(document.root_element().tag_name().name(), "svg");
        let elements = |name: &'static str| document.descendants().filter(move |node| node.has_tag_name(name));
        Parsed {
            texts: elements("text").map(|node| node.text().unwrap_or_default().trim().to_owned()).collect(),
            polylines: elements("polyline")
                .map(|node| {
                    let points = node.attribute("points").unwrap_or_default().split_whitespace().count();
                    (node.attribute("stroke").unwrap_or_default().to_uppercase(), points)
                })
                .collect(),
            rect_fills: elements("rect").filter_map(|node| node.attribute("fill")).map(str::to_uppercase).collect(),
        }
    }

    impl Parsed {
        fn has_text(&self, wanted: &str) -> bool {
            self.texts.iter().any(|text| text.contains(wanted))
        }

        /// Polylines of `stroke` with `points` points: one per series drawn.
        fn lines(&self, stroke: RGBColor, points: usize) -> usize {
            self.polylines.iter().filter(|line| line.0 == colour(stroke) && line.1 == points).count()
        }

        fn bars(&self, fill: RGBColor) -> usize {
            self.rect_fills.iter().filter(|rect| **rect == colour(fill)).count()
        }
    }

    #[test]
    fn the_latency_chart_has_a_line_per_percentile_and_the_knee_in_its_title() {
        // p99 400, 480, 800, 1200 (3 × 400), 4000 µs: the knee is the fourth step.
        let sweep = Sweep { saturation_rps: 20_000.0, curves: vec![curve("this suite", &[100, 120, 200, 300, 1000])] };
        let parsed = parse(&latency_chart(&sweep, &run()).unwrap());
        for (percentile, colour) in ["p50", "p90", "p99", "p99.9"].into_iter().zip(PALETTE) {
            assert!(parsed.has_text(&format!("this suite {percentile}")), "{percentile}: {:?}", parsed.texts);
            assert_eq!(parsed.lines(colour, 5), 1, "{percentile}: {:?}", parsed.polylines);
        }
        assert!(parsed.has_text("knee 16000 req/s (80 % of saturation)"), "{:?}", parsed.texts);
        assert!(parsed.has_text("Measured 2026-11-24 16:43 UTC, commit 97f016c, 2 cores (AMD EPYC)"));
        assert!(parsed.has_text("offered load, requests/s") && parsed.has_text("latency, ms (log scale)"));
    }

    #[test]
    fn the_comparison_chart_has_p50_and_p99_of_each_suite() {
        let sweep = Sweep {
            saturation_rps: 12_000.0,
            curves: vec![curve("this suite", &[100, 110, 150]), curve("Go, pooled", &[200, 700, 2000])],
        };
        let parsed = parse(&latency_comparison_chart(&sweep, &run()).unwrap());
        for (label, colour) in [
            ("this suite p50", PALETTE[0]),
            ("this suite p99, knee 12000 req/s (100 % of saturation)", PALETTE[1]),
            ("Go, pooled p50", PALETTE[2]),
            ("Go, pooled p99, knee 4000 req/s (33 % of saturation)", PALETTE[3]),
        ] {
            assert!(parsed.has_text(label), "{label}: {:?}", parsed.texts);
            assert_eq!(parsed.lines(colour, 3), 1, "{label}: {:?}", parsed.polylines);
        }
    }

    #[test]
    fn the_bar_charts_have_a_bar_per_target_and_store() {
        let targets: Vec<TargetFigures> =
            [("this suite", 50621.0, 31.4), ("Go, pooled", 28198.0, 58.9), ("floor", 138813.0, 7.9)]
                .map(|(name, saturation_rps, cpu_us_per_request)| TargetFigures {
                    name: name.into(),
                    load: "-c16 -m8".into(),
                    saturation_rps,
                    cpu_us_per_request,
                })
                .to_vec();
        let parsed = parse(&saturation_chart(&targets, &run()).unwrap());
        for (target, colour) in targets.iter().zip(PALETTE) {
            // One bar in each panel.
            assert_eq!(parsed.bars(colour), 2, "{}: {:?}", target.name, parsed.rect_fills);
            assert!(parsed.has_text(&target.name));
        }
        for value in ["50621", "28198", "138813", "31", "59", "8"] {
            assert!(parsed.texts.iter().any(|text| text == value), "{value}: {:?}", parsed.texts);
        }

        let ingestion = Ingestion {
            bare_consumer_eps: 151338.0,
            stores: [("memory", 145354.0), ("SQLite", 95051.0), ("PostgreSQL", 59981.0)]
                .map(|(name, value)| Bar { name: name.into(), value })
                .to_vec(),
        };
        let parsed = parse(&ingestion_chart(&ingestion, &run()).unwrap());
        assert_eq!(parsed.bars(RGBColor(120, 120, 120)), 1);
        for (store, colour) in ingestion.stores.iter().zip(PALETTE) {
            assert_eq!(parsed.bars(colour), 1, "{}: {:?}", store.name, parsed.rect_fills);
            assert!(parsed.has_text(&format!("rating on {}", store.name)));
        }
        assert!(parsed.has_text("151338") && parsed.has_text("events/s"));
    }

    #[test]
    fn only_the_charts_with_figures_are_drawn() {
        assert!(render_all(&Figures::default()).unwrap().is_empty());
        let figures = Figures {
            suite: Some(SuiteFigures {
                run: run(),
                sweep: None,
                ingestion: Some(Ingestion { bare_consumer_eps: 1.0, stores: Vec::new() }),
            }),
            comparison: None,
        };
        let files: Vec<&str> = render_all(&figures).unwrap().iter().map(|(chart, _)| chart.file).collect();
        assert_eq!(files, [INGESTION.file]);
    }
}

//! The report's charts as SVG text (plotters' SVG backend; text is left to the browser's
//! sans-serif font). Categories run top to bottom; each series has its palette colour.

use plotters::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("drawing {chart}: {msg}")]
pub struct Error {
    chart: String,
    msg: String,
}

fn fail(chart: &str) -> impl FnOnce(String) -> Error + '_ {
    move |msg| Error { chart: chart.into(), msg }
}

const WIDTH: u32 = 960;

/// One series of a bar chart: a value per category, with an optional min-max whisker.
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
    pub whiskers: Vec<Option<(f64, f64)>>,
}

fn colour(i: usize) -> RGBColor {
    // Palette99 starts with red; lead with blue, orange, green, purple like most plotting tools.
    const C: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

fn x_max(it: impl Iterator<Item = f64>) -> f64 {
    let m = it.filter(|x| x.is_finite()).fold(0.0, f64::max);
    if m > 0.0 { m * 1.08 } else { 1.0 }
}

/// Hundredths of a category row: the y axis is integral, so its labels can be names.
const ROW: i32 = 100;

/// Centre of category `i` of `n`, the top row for i = 0.
fn row(i: usize, n: usize) -> i32 {
    (n - 1 - i) as i32 * ROW
}

/// The y axis of `n` category rows, one key point (label) at each centre.
fn rows(n: usize) -> plotters::coord::combinators::WithKeyPoints<plotters::coord::types::RangedCoordi32> {
    (-ROW / 2..n as i32 * ROW - ROW / 2).with_key_points((0..n as i32).map(|i| i * ROW).collect())
}

type Frame<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::combinators::WithKeyPoints<plotters::coord::types::RangedCoordi32>,
    >,
>;

/// The chart both kinds draw on: the title, an x axis from 0 to `xmax`, a named row per category.
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    cats: &[String],
    xmax: f64,
) -> Result<Frame<'a, 'b>, Error> {
    let n = cats.len().max(1);
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(label_width(cats))
        .build_cartesian_2d(0f64..xmax, rows(n))
        .map_err(|x| fail(title)(e(&x)))?;
    let name = |y: &i32| {
        let i = n as i64 - 1 - (*y / ROW) as i64;
        cats.get(i.max(0) as usize).cloned().unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&name)
        .x_desc(x_desc)
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|x| fail(title)(e(&x)))?;
    Ok(chart)
}

fn label_width(cats: &[String]) -> u32 {
    (cats.iter().map(|c| c.chars().count()).max().unwrap_or(4) as u32 * 7 + 16).clamp(60, 420)
}

/// Horizontal bars: one group per category, one bar per series.
pub fn bars(title: &str, x_desc: &str, cats: &[String], series: &[Series]) -> Result<String, Error> {
    let n = cats.len().max(1);
    let s = series.len().max(1);
    let slot = (12 * s as u32 + 10).max(26);
    let height = 90 + slot * n as u32 + 20 * s as u32;
    let xmax = x_max(
        series.iter().flat_map(|x| x.values.iter().flatten().copied().chain(x.whiskers.iter().flatten().map(|w| w.1))),
    );
    // Room on the right for the legend, clear of the longest bar.
    let xmax = if series.len() > 1 { xmax * 1.3 } else { xmax };
    let mut svg = String::new();
    {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| fail(title)(e(&x)))?;
        let mut chart = frame(&root, title, x_desc, cats, xmax)?;
        let band = 80 / s as i32;
        for (k, ser) in series.iter().enumerate() {
            let c = colour(k);
            let y0 = |i: usize| row(i, n) + 40 - band * (k as i32 + 1);
            let rects = ser.values.iter().enumerate().filter_map(|(i, v)| {
                v.filter(|v| v.is_finite())
                    .map(|v| Rectangle::new([(0.0, y0(i)), (v, y0(i) + band * 9 / 10)], c.filled()))
            });
            chart
                .draw_series(rects)
                .map_err(|x| fail(title)(e(&x)))?
                .label(ser.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
            let whiskers = ser.whiskers.iter().enumerate().filter_map(|(i, w)| {
                let yc = y0(i) + band * 9 / 20;
                w.map(|(lo, hi)| PathElement::new(vec![(lo, yc), (hi, yc)], BLACK.stroke_width(2)))
            });
            chart.draw_series(whiskers).map_err(|x| fail(title)(e(&x)))?;
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(|x| fail(title)(e(&x)))?;
        }
        root.present().map_err(|x| fail(title)(e(&x)))?;
    }
    Ok(svg)
}

/// Per category, one dot per point (e.g. per rank) on a min-max line.
pub fn dots(title: &str, x_desc: &str, cats: &[String], points: &[Vec<f64>]) -> Result<String, Error> {
    let n = cats.len().max(1);
    let height = 90 + 30 * n as u32;
    let xmax = x_max(points.iter().flatten().copied());
    let mut svg = String::new();
    {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| fail(title)(e(&x)))?;
        let mut chart = frame(&root, title, x_desc, cats, xmax)?;
        for (i, p) in points.iter().enumerate() {
            let y = row(i, n);
            let (lo, hi) = p.iter().fold((f64::INFINITY, 0f64), |(a, b), x| (a.min(*x), b.max(*x)));
            if p.is_empty() {
                continue;
            }
            chart
                .draw_series([PathElement::new(vec![(lo, y), (hi, y)], colour(0).stroke_width(2))])
                .map_err(|x| fail(title)(e(&x)))?;
            chart
                .draw_series(p.iter().map(|x| Circle::new((*x, y), 4, colour(1).filled())))
                .map_err(|x| fail(title)(e(&x)))?;
        }
        root.present().map_err(|x| fail(title)(e(&x)))?;
    }
    Ok(svg)
}

/// Lines over an integer x (e.g. expert index), one per series.
pub fn lines(title: &str, x_desc: &str, y_desc: &str, series: &[(String, Vec<f64>)]) -> Result<String, Error> {
    let len = series.iter().map(|s| s.1.len()).max().unwrap_or(1).max(2);
    let ymax = x_max(series.iter().flat_map(|s| s.1.iter().copied()));
    let mut svg = String::new();
    {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| fail(title)(e(&x)))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..(len - 1) as f64, 0f64..ymax)
            .map_err(|x| fail(title)(e(&x)))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|x| fail(title)(e(&x)))?;
        for (k, (name, ys)) in series.iter().enumerate() {
            let c = colour(k);
            chart
                .draw_series(LineSeries::new(ys.iter().enumerate().map(|(i, y)| (i as f64, *y)), c.stroke_width(2)))
                .map_err(|x| fail(title)(e(&x)))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|x| fail(title)(e(&x)))?;
        root.present().map_err(|x| fail(title)(e(&x)))?;
    }
    Ok(svg)
}

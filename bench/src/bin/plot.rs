//! Draws the README's plot: throughput against client count for tinyraft and etcd, from the
//! CSV that `bench/etcd_compare.sh` writes (`system,clients,ops_per_sec,p50_ms,p99_ms,...`).
//!
//! ```sh
//! cargo run -p tinyraft-bench --bin plot -- bench/results/etcd_compare.csv \
//!     bench/results/throughput_vs_clients.svg "2 cores, 2026-11-24"
//! ```

use std::collections::BTreeMap;
use std::error::Error;

use plotters::prelude::*;

/// Points of one system: clients → operations per second.
type Series = BTreeMap<u32, f64>;

fn read(path: &str) -> Result<BTreeMap<String, Series>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut runs: BTreeMap<String, BTreeMap<u32, Vec<f64>>> = BTreeMap::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 3 {
            return Err(format!("{path}: short line `{line}`").into());
        }
        let clients: u32 = f[1].trim().parse()?;
        let rate: f64 = f[2].trim().parse()?;
        let system = runs.entry(f[0].trim().to_string()).or_default();
        system.entry(clients).or_default().push(rate);
    }
    // Several runs of one point: plot their median.
    Ok(runs
        .into_iter()
        .map(|(name, points)| {
            let series = points
                .into_iter()
                .map(|(c, mut rates)| {
                    rates.sort_by(f64::total_cmp);
                    (c, rates[rates.len() / 2])
                })
                .collect();
            (name, series)
        })
        .collect())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [csv, svg, note] = args.as_slice() else {
        return Err("usage: plot RESULTS.csv OUT.svg \"MACHINE, DATE\"".into());
    };
    let data = read(csv)?;
    let x_max = data
        .values()
        .flat_map(|s| s.keys())
        .copied()
        .max()
        .unwrap_or(1);
    let y_max = data
        .values()
        .flat_map(|s| s.values())
        .copied()
        .fold(0.0, f64::max);

    let root = SVGBackend::new(svg, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Durable puts/s vs closed-loop clients, 3 nodes on loopback ({note})"),
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1u32..x_max.max(2) * 5 / 4).log_scale(), 0.0..y_max * 1.1)?;
    chart
        .configure_mesh()
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(TRANSPARENT)
        .x_desc("clients")
        .y_desc("puts per second")
        .y_label_formatter(&|v| format!("{:.0}", v))
        .draw()?;
    let colors = [RGBColor(0x1f, 0x77, 0xb4), RGBColor(0xd6, 0x27, 0x28)];
    for (i, (name, series)) in data.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points: Vec<(u32, f64)> = series.iter().map(|(&c, &r)| (c, r)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    println!("wrote {svg}");
    Ok(())
}

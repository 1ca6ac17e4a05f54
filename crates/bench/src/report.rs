//! The figures of one run: each with its raw baseline and target, printed as a table and
//! written as JSON so runs can be compared.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

/// A raw measurement a figure is compared to, taken in the same run.
#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// Stable key (`append_batched`, `replication`, ...).
    pub key: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub baselines: Vec<Baseline>,
    /// `value / baselines[0].value` where that comparison is part of the target.
    pub ratio: Option<f64>,
    /// The target, in words.
    pub target: String,
    pub met: bool,
    /// Sizes and anything else needed to read the figure.
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub started_at: String,
    pub machine: String,
    pub figures: Vec<Figure>,
}

/// Rates measured several times over the same work: the best of them (the rate the machine
/// evidently reaches when nothing else gets in the way) and all of them, listed for the
/// figure's name or detail.
pub struct Runs {
    pub best: f64,
    pub listed: String,
}

impl Runs {
    pub fn of(rates: &[f64]) -> Runs {
        Runs {
            best: rates.iter().copied().fold(0.0, f64::max),
            listed: rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

fn fmt_value(v: f64, unit: &str) -> String {
    if unit == "events/s" || unit == "msgs/s" {
        format!("{:.0} {unit}", v)
    } else {
        format!("{v:.2} {unit}")
    }
}

impl Report {
    pub fn push(&mut self, f: Figure) {
        print_figure(&f);
        self.figures.push(f);
    }

    pub fn print_summary(&self) {
        println!();
        println!(
            "{:<34} {:>18} {:>8}  {:<5} target",
            "figure", "value", "ratio", "met"
        );
        for f in &self.figures {
            println!(
                "{:<34} {:>18} {:>8}  {:<5} {}",
                f.key,
                fmt_value(f.value, &f.unit),
                f.ratio.map_or("-".to_string(), |r| format!("{r:.2}x")),
                if f.met { "yes" } else { "NO" },
                f.target
            );
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self).context("cannot render the report")?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

fn print_figure(f: &Figure) {
    println!("== {} ({})", f.name, f.detail);
    println!("   {:<40} {}", "ticketsync", fmt_value(f.value, &f.unit));
    for b in &f.baselines {
        println!("   {:<40} {}", b.name, fmt_value(b.value, &b.unit));
    }
    if let Some(r) = f.ratio {
        println!("   ratio {r:.2}x");
    }
    println!(
        "   target: {} -> {}",
        f.target,
        if f.met { "met" } else { "NOT met" }
    );
}

/// Events per second of `n` events in `secs` seconds.
pub fn rate(n: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        n as f64 / secs
    }
}

/// The `q` quantile (0..=1) of sorted samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

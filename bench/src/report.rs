//! The results: a table for people, a JSON document for comparing commits.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

/// Whether a figure meets its target, when it has one.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    target: Option<(&'static str, bool)>,
}

impl Verdict {
    /// No target for this figure.
    pub fn none() -> Self {
        Self::default()
    }

    /// `target` is met when `ok`.
    pub fn check(ok: bool, target: &'static str) -> Self {
        Self {
            target: Some((target, ok)),
        }
    }

    fn show(&self) -> String {
        match self.target {
            None => String::new(),
            Some((t, true)) => format!("{t}: met"),
            Some((t, false)) => format!("{t}: MISSED"),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    figure: String,
    /// lightsout's value, or a free-text note spanning the value columns.
    ours: String,
    floor: Option<String>,
    ratio: Option<f64>,
    verdict: Verdict,
}

impl Row {
    /// A figure with lightsout's value, the floor's and their ratio.
    pub fn new(
        figure: String,
        ours: String,
        floor: String,
        ratio: Option<f64>,
        verdict: Verdict,
    ) -> Self {
        Self {
            figure,
            ours,
            floor: Some(floor),
            ratio,
            verdict,
        }
    }

    /// A line of detail.
    pub fn note(figure: &str, text: String) -> Self {
        Self {
            figure: figure.to_owned(),
            ours: text,
            floor: None,
            ratio: None,
            verdict: Verdict::none(),
        }
    }
}

/// Everything measured in one run.
#[derive(Debug)]
pub struct Report {
    /// Table rows, in order.
    pub rows: Vec<Row>,
    /// The JSON document, filled in by the run.
    pub json: Value,
    header: String,
}

impl Report {
    /// An empty report for a run.
    pub fn new(quick: bool, cpus: usize, commit: Option<String>) -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let mode = if quick { "quick" } else { "full" };
        let header = format!(
            "lightsout benchmark ({mode} run, {cpus} CPUs, commit {}, loopback, agents in --dry-run)",
            commit.as_deref().unwrap_or("unknown")
        );
        Self {
            rows: Vec::new(),
            json: json!({
                "schema": 1,
                "mode": mode,
                "commit": commit,
                "unix_time": unix,
                "cpus": cpus,
                "kernel": kernel,
            }),
            header,
        }
    }

    /// The table as text.
    pub fn table(&self) -> String {
        let figure_w = self
            .rows
            .iter()
            .map(|r| r.figure.chars().count())
            .max()
            .unwrap_or(6);
        let mut out = format!("\n{}\n\n", self.header);
        out.push_str(&format!(
            "{:<figure_w$}  {:>12}  {:>12}  {:>7}  TARGET\n",
            "FIGURE", "LIGHTSOUT", "FLOOR", "RATIO"
        ));
        for r in &self.rows {
            match &r.floor {
                None => out.push_str(&format!("{:<figure_w$}  {}\n", r.figure, r.ours)),
                Some(floor) => {
                    let ratio = r
                        .ratio
                        .filter(|x| x.is_finite())
                        .map_or_else(String::new, |x| format!("{x:.2}×"));
                    out.push_str(
                        format!(
                            "{:<figure_w$}  {:>12}  {:>12}  {:>7}  {}",
                            r.figure,
                            r.ours,
                            floor,
                            ratio,
                            r.verdict.show()
                        )
                        .trim_end(),
                    );
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Writes the JSON document (with the targets' verdicts) to `path`, creating directories.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&mut self, path: &Path) -> anyhow::Result<()> {
        let targets: Vec<Value> = self
            .rows
            .iter()
            .filter_map(|r| {
                let (target, met) = r.verdict.target?;
                Some(json!({ "figure": r.figure, "target": target, "met": met }))
            })
            .collect();
        self.json["targets"] = json!(targets);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&self.json)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("failed to write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_ratio_and_verdict() {
        let mut r = Report::new(true, 2, Some("abc".into()));
        r.rows.push(Row::new(
            "one process".into(),
            "2.00 ms".into(),
            "1.00 ms".into(),
            Some(2.0),
            Verdict::check(true, "< 10 ms"),
        ));
        r.rows.push(Row::note("  spread", "p10–p90 1–3 ms".into()));
        let t = r.table();
        assert!(t.contains("2.00×  < 10 ms: met"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("  spread ") && l.ends_with("p10–p90 1–3 ms")),
            "{t}"
        );
    }
}

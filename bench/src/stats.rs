//! Summaries of repeated measurements: median and spread.

use std::time::Duration;

use serde_json::{Value, json};

/// A sorted series of durations.
#[derive(Debug, Clone)]
pub struct Series {
    sorted: Vec<Duration>,
}

impl Series {
    /// Sorts `samples`. An empty series reports zeros.
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The `p`-th percentile (0–100), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let last = self.sorted.len() - 1;
        // Nearest rank on 0..=last.
        let index = ((p / 100.0) * last as f64).round() as usize;
        self.sorted[index.min(last)]
    }

    /// The median.
    pub fn median(&self) -> Duration {
        self.percentile(50.0)
    }

    /// The smallest sample.
    pub fn min(&self) -> Duration {
        self.sorted.first().copied().unwrap_or_default()
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }

    /// `{"runs", "median_ms", "p10_ms", "p90_ms", "p99_ms", "min_ms", "max_ms"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "runs": self.len(),
            "median_ms": ms(self.median()),
            "p10_ms": ms(self.percentile(10.0)),
            "p90_ms": ms(self.percentile(90.0)),
            "p99_ms": ms(self.percentile(99.0)),
            "min_ms": ms(self.min()),
            "max_ms": ms(self.max()),
        })
    }
}

/// Milliseconds with microsecond resolution, for JSON.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A duration for people: `850 µs`, `4.2 ms`, `1.23 s`.
pub fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// `a / b`, or NaN when `b` is zero.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        f64::NAN
    } else {
        a.as_secs_f64() / b.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = Series::new((1..=11).rev().map(Duration::from_millis).collect());
        assert_eq!(s.median(), Duration::from_millis(6));
        assert_eq!(s.percentile(10.0), Duration::from_millis(2));
        assert_eq!(s.percentile(90.0), Duration::from_millis(10));
        assert_eq!(s.min(), Duration::from_millis(1));
        assert_eq!(s.max(), Duration::from_millis(11));
        assert_eq!(Series::new(Vec::new()).median(), Duration::ZERO);
    }

    #[test]
    fn human_units() {
        assert_eq!(human(Duration::from_micros(850)), "850 µs");
        assert_eq!(human(Duration::from_micros(4200)), "4.20 ms");
        assert_eq!(human(Duration::from_millis(250)), "250.0 ms");
        assert_eq!(human(Duration::from_millis(1230)), "1.23 s");
    }
}

//! A latency histogram in microseconds that can cross a process boundary.
//!
//! A thin wrapper over `hdrhistogram`: values from 1 µs to an hour at three
//! significant digits, so memory is fixed (tens of KiB) however many samples
//! go in, and recording never fails (values out of range are clamped). A
//! worker process sends its histogram to the parent as `[value, count]`
//! pairs ([`Latency::to_pairs`]), which the parent adds back in
//! ([`Latency::add_pairs`]) without losing more than the histogram's own
//! precision.

use hdrhistogram::Histogram;

/// Highest recordable latency: one hour, in µs.
const MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits kept.
const SIGFIG: u8 = 3;

/// Delivery latencies, in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Option<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts; should that
        // ever change, samples are dropped rather than the bench panicking.
        Self {
            histogram: Histogram::new_with_bounds(1, MAX_US, SIGFIG).ok(),
        }
    }

    /// Records one latency (clamped to 1 µs .. 1 h).
    pub fn record_us(&mut self, us: u64) {
        if let Some(h) = self.histogram.as_mut() {
            h.saturating_record(us.clamp(1, MAX_US));
        }
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.histogram.as_ref().map_or(0, Histogram::len)
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latency at `quantile` (0.0 ..= 1.0) in milliseconds, or `None`
    /// when empty.
    pub fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        let h = self.histogram.as_ref().filter(|h| !h.is_empty())?;
        Some(h.value_at_quantile(quantile) as f64 / 1000.0)
    }

    /// The largest latency in milliseconds, or `None` when empty.
    pub fn max_ms(&self) -> Option<f64> {
        let h = self.histogram.as_ref().filter(|h| !h.is_empty())?;
        Some(h.max() as f64 / 1000.0)
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latency) {
        self.add_pairs(&other.to_pairs());
    }

    /// The recorded values as `[value µs, count]` pairs, one per non-empty
    /// bucket.
    pub fn to_pairs(&self) -> Vec<[u64; 2]> {
        self.histogram.as_ref().map_or_else(Vec::new, |h| {
            h.iter_recorded()
                .map(|v| [v.value_iterated_to(), v.count_at_value()])
                .collect()
        })
    }

    /// Adds samples given as `[value µs, count]` pairs.
    pub fn add_pairs(&mut self, pairs: &[[u64; 2]]) {
        if let Some(h) = self.histogram.as_mut() {
            for &[value, count] in pairs {
                h.saturating_record_n(value.clamp(1, MAX_US), count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_keeps_quantiles() {
        let mut a = Latency::new();
        for us in 1..=10_000 {
            a.record_us(us);
        }
        let mut b = Latency::new();
        b.add_pairs(&a.to_pairs());
        assert_eq!(b.len(), 10_000);
        assert_eq!(a.quantile_ms(0.5), b.quantile_ms(0.5));
        assert_eq!(a.quantile_ms(0.99), b.quantile_ms(0.99));
        assert_eq!(a.max_ms(), b.max_ms());
    }

    #[test]
    fn empty_has_no_quantiles() {
        let l = Latency::new();
        assert!(l.is_empty());
        assert_eq!(l.quantile_ms(0.5), None);
        assert_eq!(l.max_ms(), None);
    }
}

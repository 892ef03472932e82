//! The Prometheus primitives behind [`Metrics`](super::Metrics): counters, histograms, labelled
//! families and the text encoder (exposition format 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A monotonically increasing number. Kept as the bits of an `f64` so that fractional amounts
/// (seconds of audio) add up without a lock.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1.0);
    }

    /// Adds `amount`; anything not positive (a negative amount, NaN) is ignored, so the counter
    /// never goes down.
    pub fn add(&self, amount: f64) {
        if amount.is_nan() || amount <= 0.0 {
            return;
        }
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + amount).to_bits())
            });
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Observations counted into fixed buckets. A lock (not atomics per bucket) so that a scrape
/// sees the buckets, the count and the sum of the same observations: `+Inf` always equals
/// `_count`.
pub struct Histogram {
    /// Upper bounds, ascending, without `+Inf`.
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

struct HistogramState {
    /// Observations per bucket (not cumulative); one more than `bounds` for `+Inf`.
    buckets: Vec<u64>,
    sum: f64,
}

/// A histogram as the text format shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations ≤ bound)`, cumulative, ending with `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Self {
            bounds,
            state: Mutex::new(HistogramState {
                buckets: vec![0; bounds.len() + 1],
                sum: 0.0,
            }),
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value`. NaN is ignored.
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let index = self.bounds.partition_point(|bound| *bound < value);
        let mut state = lock(&self.state);
        state.buckets[index] += 1;
        state.sum += value;
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let state = lock(&self.state);
        let mut total = 0;
        let buckets = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&state.buckets)
            .map(|(bound, n)| {
                total += n;
                (bound, total)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: total,
            sum: state.sum,
        }
    }
}

/// One metric with labels: a child per distinct set of label values, made on first use.
pub struct Family<M> {
    label_names: &'static [&'static str],
    make: fn() -> M,
    /// Few children (tens at most), so a list searched in order: a lookup allocates nothing.
    children: Mutex<Vec<(Vec<String>, M)>>,
}

impl<M> Family<M> {
    pub fn new(label_names: &'static [&'static str], make: fn() -> M) -> Self {
        Self {
            label_names,
            make,
            children: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on the child with these label values (one per label name), making it if needed.
    pub fn with<R>(&self, values: &[&str], f: impl FnOnce(&M) -> R) -> R {
        debug_assert_eq!(values.len(), self.label_names.len(), "one value per label");
        let mut children = lock(&self.children);
        let index = match children
            .iter()
            .position(|(v, _)| v.iter().map(String::as_str).eq(values.iter().copied()))
        {
            Some(index) => index,
            None => {
                let key = values.iter().map(|v| (*v).to_owned()).collect();
                children.push((key, (self.make)()));
                children.len() - 1
            }
        };
        f(&children[index].1)
    }

    /// Makes the child with these label values so that it is exported (at zero) before use.
    pub fn touch(&self, values: &[&str]) {
        self.with(values, |_| ());
    }

    /// Each child's label pairs and value, in the order they were made.
    fn collect<T>(&self, value: impl Fn(&M) -> T) -> Vec<(Vec<(&'static str, String)>, T)> {
        lock(&self.children)
            .iter()
            .map(|(values, child)| {
                let labels = self.label_names.iter().copied().zip(values.clone());
                (labels.collect(), value(child))
            })
            .collect()
    }
}

/// Every lock here guards plain numbers that are consistent between statements; a panic
/// elsewhere must not stop metrics.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes the text format: a `# HELP` and `# TYPE` line per family, then its samples.
#[derive(Default)]
pub(super) struct Encoder {
    pub(super) text: String,
}

impl Encoder {
    pub(super) fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    pub(super) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }

    pub(super) fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        self.sample(name, &[], value);
    }

    pub(super) fn counter(&mut self, name: &str, help: &str, counter: &Counter) {
        self.header(name, help, "counter");
        self.sample(name, &[], counter.get());
    }

    /// A family with no children yet is left out, header included (as other clients do).
    pub(super) fn counter_family(&mut self, name: &str, help: &str, family: &Family<Counter>) {
        let children = family.collect(Counter::get);
        if children.is_empty() {
            return;
        }
        self.header(name, help, "counter");
        for (labels, value) in children {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.sample(name, &labels, value);
        }
    }

    pub(super) fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.header(name, help, "histogram");
        self.histogram_samples(name, &[], &histogram.snapshot());
    }

    pub(super) fn histogram_family(&mut self, name: &str, help: &str, family: &Family<Histogram>) {
        let children = family.collect(Histogram::snapshot);
        if children.is_empty() {
            return;
        }
        self.header(name, help, "histogram");
        for (labels, snapshot) in children {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.histogram_samples(name, &labels, &snapshot);
        }
    }

    fn histogram_samples(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in &h.buckets {
            let le = format_value(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, *count as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }
}

/// A sample value as Prometheus parses it (`+Inf`, not Rust's `inf`).
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text escapes backslash and line feed (a double quote stays as it is).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let h = Histogram::new(&[0.1, 1.0, 10.0]);
        for v in [0.05, 0.1, 0.5, 2.0, 20.0, f64::NAN] {
            h.observe(v);
        }
        let s = h.snapshot();
        // 0.1 falls in `le="0.1"`: bounds are inclusive.
        assert_eq!(
            s.buckets,
            vec![(0.1, 2), (1.0, 3), (10.0, 4), (f64::INFINITY, 5)]
        );
        assert_eq!(s.count, 5, "NaN is not counted");
        assert!((s.sum - 22.65).abs() < 1e-9);
    }

    #[test]
    fn histogram_renders_every_bucket_sum_and_count() {
        let mut out = Encoder::default();
        let h = Histogram::new(&[0.5]);
        h.observe(0.25);
        h.observe(3.0);
        out.histogram("t_seconds", "A test.", &h);
        assert_eq!(
            out.text,
            "# HELP t_seconds A test.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{le=\"0.5\"} 1\nt_seconds_bucket{le=\"+Inf\"} 2\n\
             t_seconds_sum 3.25\nt_seconds_count 2\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let family = Family::new(&["namespace"], Counter::default);
        family.with(&["a\"b\\c\nd"], Counter::inc);
        let mut out = Encoder::default();
        out.counter_family("t_total", "Back\\slash\nand \"quotes\".", &family);
        assert_eq!(
            out.text,
            "# HELP t_total Back\\\\slash\\nand \"quotes\".\n# TYPE t_total counter\n\
             t_total{namespace=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn counters_only_go_up() {
        let c = Counter::default();
        c.add(1.5);
        c.add(-3.0);
        c.add(f64::NAN);
        c.inc();
        assert_eq!(c.get(), 2.5);
    }

    #[test]
    fn families_reuse_children_and_skip_empty_output() {
        let family = Family::new(&["purpose", "kind"], Counter::default);
        let mut out = Encoder::default();
        out.counter_family("t_total", "A test.", &family);
        assert!(out.text.is_empty(), "no children, no header");
        family.with(&["keywords", "timeout"], Counter::inc);
        family.with(&["keywords", "timeout"], Counter::inc);
        family.touch(&["answer", "timeout"]);
        out.counter_family("t_total", "A test.", &family);
        assert!(
            out.text
                .contains("t_total{purpose=\"keywords\",kind=\"timeout\"} 2\n")
        );
        assert!(
            out.text
                .contains("t_total{purpose=\"answer\",kind=\"timeout\"} 0\n")
        );
    }

    #[test]
    fn values_use_prometheus_spelling() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(0.005), "0.005");
        assert_eq!(format_value(3.0), "3");
    }
}

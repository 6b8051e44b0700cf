//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! One process-wide registry: metrics are about the process, and a global
//! spares every layer (plugin host, upload pipeline, preview cache) from
//! carrying a handle just to count things.

use std::{sync::LazyLock, time::Duration};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    uploads: IntCounterVec,
    bytes_stored: IntCounter,
    files_stored: IntCounter,
    plugin_calls: IntCounterVec,
    plugin_failures: IntCounterVec,
    plugin_seconds: HistogramVec,
    preview_cache: IntCounterVec,
    db_commands: IntCounterVec,
    pub database_up: IntGauge,
    pub connections_open: IntGauge,
    pub upload_memory_bytes: IntGauge,
    pub plugins_loaded: IntGauge,
    pub plugin_load_errors: IntGauge,
}

/// How an upload ended, as counted by `pd2_uploads_total{outcome}`.
#[derive(Debug, Clone, Copy)]
pub enum UploadOutcome {
    /// A ticket was recorded.
    Stored,
    /// Refused for the client's fault (4xx): limits, names, policy.
    Rejected,
    /// The server could not finish it (5xx): database, plugin host.
    Failed,
    /// Refused before it began: no share of `limits.upload_memory` came
    /// free (503).
    Busy,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Request latencies span sub-millisecond pings to multi-second uploads.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Plugin calls: ~20 µs for a tiny hook up to the 2 s default time limit.
const PLUGIN_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.0, 5.0,
];

impl Metrics {
    fn new() -> Self {
        let metrics = Self::register();
        // Series that exist from the start read as 0 rather than missing.
        for outcome in ["stored", "rejected", "failed", "busy"] {
            metrics.uploads.with_label_values(&[outcome]);
        }
        for result in ["hit", "miss"] {
            metrics.preview_cache.with_label_values(&[result]);
        }
        metrics
    }

    fn register() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let h = HistogramVec::new(opts, labels).expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let single = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        Self {
            requests: counter(
                "pd2_http_requests_total",
                "HTTP requests answered, by route template and status.",
                &["method", "route", "status"],
            ),
            request_seconds: histogram(
                "pd2_http_request_duration_seconds",
                "Time from request to response head, by route template.",
                &["method", "route"],
                REQUEST_BUCKETS,
            ),
            uploads: counter(
                "pd2_uploads_total",
                "Ticket uploads by outcome (stored, rejected, failed).",
                &["outcome"],
            ),
            bytes_stored: single(
                "pd2_upload_bytes_stored_total",
                "File bytes of uploads that became tickets.",
            ),
            files_stored: single(
                "pd2_upload_files_stored_total",
                "Files of uploads that became tickets.",
            ),
            plugin_calls: counter(
                "pd2_plugin_calls_total",
                "Plugin hook calls, by plugin and hook.",
                &["plugin", "hook"],
            ),
            plugin_failures: counter(
                "pd2_plugin_failures_total",
                "Plugin hook calls that failed, by reason: timeout, out_of_memory, panic, trap, bad_output, host.",
                &["plugin", "hook", "reason"],
            ),
            plugin_seconds: histogram(
                "pd2_plugin_call_duration_seconds",
                "Plugin hook call time (instantiate, call, drop).",
                &["plugin", "hook"],
                PLUGIN_BUCKETS,
            ),
            preview_cache: counter(
                "pd2_preview_cache_total",
                "Preview lookups answered from the cache (hit) or by running a renderer (miss).",
                &["result"],
            ),
            db_commands: counter(
                "pd2_db_commands_total",
                "Commands sent to the database (round trips), by command name.",
                &["command"],
            ),
            database_up: gauge(
                "pd2_database_up",
                "1 when the last database check succeeded.",
            ),
            connections_open: gauge(
                "pd2_connections_open",
                "Client connections open (at most `server.max_connections`).",
            ),
            upload_memory_bytes: gauge(
                "pd2_upload_memory_bytes",
                "Bytes of `limits.upload_memory` held by uploads in flight.",
            ),
            plugins_loaded: gauge("pd2_plugins_loaded", "Plugins currently loaded."),
            plugin_load_errors: gauge(
                "pd2_plugin_load_errors",
                "Files in the plugin directory that could not be loaded.",
            ),
            registry,
        }
    }

    pub fn request(&self, method: &str, route: &str, status: &str, elapsed: Duration) {
        self.requests
            .with_label_values(&[method, route, status])
            .inc();
        self.request_seconds
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    pub fn upload(&self, outcome: UploadOutcome, files: usize, bytes: u64) {
        let label = match outcome {
            UploadOutcome::Stored => "stored",
            UploadOutcome::Rejected => "rejected",
            UploadOutcome::Failed => "failed",
            UploadOutcome::Busy => "busy",
        };
        self.uploads.with_label_values(&[label]).inc();
        if let UploadOutcome::Stored = outcome {
            self.files_stored.inc_by(files as u64);
            self.bytes_stored.inc_by(bytes);
        }
    }

    pub fn plugin_call(&self, plugin: &str, hook: &str, elapsed: Duration, failed: Option<&str>) {
        let labels = [plugin, hook];
        self.plugin_calls.with_label_values(&labels).inc();
        self.plugin_seconds
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(reason) = failed {
            self.plugin_failures
                .with_label_values(&[plugin, hook, reason])
                .inc();
        }
    }

    pub fn preview_cache(&self, hit: bool) {
        self.preview_cache
            .with_label_values(&[if hit { "hit" } else { "miss" }])
            .inc();
    }

    pub fn db_command(&self, name: &str) {
        // Command names come from the driver, never from a client: a
        // small fixed set.
        self.db_commands.with_label_values(&[name]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "could not encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

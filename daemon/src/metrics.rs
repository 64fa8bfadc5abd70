//! Prometheus metrics of jobnetd and the loopback HTTP endpoint that serves them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use jobnet_api::ErrorCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::jobcheck::gauges::JobGauges;

/// Label of per-pool gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// Pool name.
    pub pool: String,
}

/// Label of the error counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// API error code.
    pub code: String,
}

/// Label of the per-endpoint latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// API operation (`reserve`, `commit`, ...).
    pub endpoint: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric jobnetd exports.
pub struct Metrics {
    registry: Registry,
    /// Time to answer a reserve (including the durable write).
    pub reserve_seconds: Histogram,
    /// Time from reserve to commit of an attachment (the CNI's attach time).
    pub attach_seconds: Histogram,
    /// Time to answer each API operation.
    pub request_seconds: HistogramFamily<EndpointLabel>,
    /// API errors by code.
    pub errors: Family<CodeLabel, Counter>,
    /// Free VFs per pool.
    pub free_vfs: Family<PoolLabel, Gauge>,
    /// Free job subnets per pool (when the pool can tell).
    pub free_subnets: Family<PoolLabel, Gauge>,
    /// Recorded attachments.
    pub attachments: Gauge,
    /// Attachments released by reconciliation.
    pub reconciled: Counter,
    /// Per-job readiness and preflight gauges.
    pub jobs: JobGauges,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("jobnet");
        let reserve_seconds = latency_histogram();
        let attach_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let request_seconds: HistogramFamily<EndpointLabel> =
            Family::new_with_constructor(latency_histogram);
        let errors = Family::<CodeLabel, Counter>::default();
        let free_vfs = Family::<PoolLabel, Gauge>::default();
        let free_subnets = Family::<PoolLabel, Gauge>::default();
        let attachments = Gauge::default();
        let reconciled = Counter::default();
        registry.register(
            "reserve_duration_seconds",
            "Time to answer a reserve, durable write included",
            reserve_seconds.clone(),
        );
        registry.register(
            "attach_duration_seconds",
            "Time from reserve to commit of an attachment",
            attach_seconds.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Time to answer an API request, by operation",
            request_seconds.clone(),
        );
        registry.register("api_errors", "API errors by code", errors.clone());
        registry.register("free_vfs", "Free VFs per pool", free_vfs.clone());
        registry.register(
            "free_subnets",
            "Job subnets still available per pool",
            free_subnets.clone(),
        );
        registry.register(
            "attachments",
            "Attachments recorded (reserved and committed)",
            attachments.clone(),
        );
        registry.register(
            "reconciled_releases",
            "Attachments released by reconciliation or GC",
            reconciled.clone(),
        );
        let jobs = JobGauges::register(&mut registry);
        Self {
            registry,
            reserve_seconds,
            attach_seconds,
            request_seconds,
            errors,
            free_vfs,
            free_subnets,
            attachments,
            reconciled,
            jobs,
        }
    }

    /// Counts one API error.
    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&CodeLabel {
                code: code.as_str().to_owned(),
            })
            .inc();
    }

    /// Records how long one API operation took.
    pub fn observe_request(&self, endpoint: &str, elapsed: Duration) {
        self.request_seconds
            .get_or_create(&EndpointLabel {
                endpoint: endpoint.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the per-pool gauges.
    pub fn set_pool(&self, pool: &str, free_vfs: u32, free_subnets: Option<u64>) {
        let label = PoolLabel {
            pool: pool.to_owned(),
        };
        self.free_vfs.get_or_create(&label).set(i64::from(free_vfs));
        if let Some(n) = free_subnets {
            self.free_subnets
                .get_or_create(&label)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `addr` until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&metrics, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

fn answer<B>(metrics: &Metrics, req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, ctype, body) = if req.uri().path() == "/metrics" {
        (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "only /metrics here\n".to_owned(),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Binds the metrics listener (loopback unless configured otherwise).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new();
        m.error(ErrorCode::PoolExhausted);
        m.set_pool("rdma", 7, Some(3));
        m.reserve_seconds.observe(0.001);
        m.observe_request("reserve", Duration::from_millis(2));
        let text = m.encode();
        assert!(
            text.contains("jobnet_api_errors_total{code=\"pool-exhausted\"} 1"),
            "{text}"
        );
        assert!(text.contains("jobnet_free_vfs{pool=\"rdma\"} 7"), "{text}");
        assert!(
            text.contains("jobnet_free_subnets{pool=\"rdma\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("jobnet_reserve_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("endpoint=\"reserve\""), "{text}");
    }
}

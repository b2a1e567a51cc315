//! Prometheus metrics (prometheus-client), served on /metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Labels of per-kind reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Kind reconciled.
    pub kind: String,
}

/// Labels of reconcile errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Kind reconciled.
    pub kind: String,
    /// Error class.
    pub reason: String,
}

/// Labels of API writes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Kind reconciled when the write happened.
    pub kind: String,
    /// What was written (status, object, namespace, secret, order, finalizer, grant, delete).
    pub target: String,
}

/// Labels of the instance gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// Phase.
    pub phase: String,
    /// Scenario.
    pub scenario: String,
    /// Health of the instance's objects: Healthy (Ready), Progressing
    /// (Reconciling), Degraded (Stalled), or Unknown (not deployed, or not
    /// told yet).
    pub health: String,
}

/// Labels of version changes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionChangeLabels {
    /// Upgrade, Rollback or AutomaticRollback.
    pub change: String,
    /// Started, Succeeded, Failed or Blocked.
    pub result: String,
}

/// Every metric the controller exports.
pub struct Metrics {
    /// The registry served on /metrics.
    pub registry: Registry,
    /// Reconciles by kind.
    pub reconciles: Family<KindLabels, Counter>,
    /// Reconcile errors by kind and reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration by kind.
    pub duration: Family<KindLabels, Histogram>,
    /// Writes made to the API server, by kind and target.
    pub writes: Family<WriteLabels, Counter>,
    /// Objects in the caches, by kind.
    pub objects: Family<KindLabels, Gauge>,
    /// Instances by phase, scenario and health.
    pub instances: Family<InstanceLabels, Gauge>,
    /// Orphans removed by the periodic sweep, by what they were.
    pub swept: Family<KindLabels, Counter>,
    /// Drift of provisioned objects: detected, corrected, backoff (repairs undone again).
    pub drift: Family<WriteLabels, Counter>,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
    /// Version changes of instances, by change and result.
    pub version_changes: Family<VersionChangeLabels, Counter>,
    /// Usage records decided, by result (Accepted, Duplicate, or the reason refused).
    pub usage_records: Family<KindLabels, Counter>,
    /// Quantities rated in settled usage periods, by dimension.
    pub usage_rated: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("computenest");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let writes = Family::<WriteLabels, Counter>::default();
        let objects = Family::<KindLabels, Gauge>::default();
        let instances = Family::<InstanceLabels, Gauge>::default();
        let leader = Gauge::default();
        let swept = Family::<KindLabels, Counter>::default();
        let drift = Family::<WriteLabels, Counter>::default();
        registry.register(
            "swept",
            "Orphans removed by the periodic sweep (managed namespaces, access grants)",
            swept.clone(),
        );
        registry.register("reconciles", "Reconciles by kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile errors by kind and reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by kind",
            duration.clone(),
        );
        registry.register(
            "api_writes",
            "Writes made to the API server by kind and target",
            writes.clone(),
        );
        registry.register(
            "objects",
            "Objects in the controller's caches by kind",
            objects.clone(),
        );
        registry.register(
            "instances",
            "ServiceInstances by phase, scenario and health",
            instances.clone(),
        );
        registry.register(
            "drift",
            "Drift of provisioned objects, by kind and what was done (target: detected, corrected, backoff)",
            drift.clone(),
        );
        let version_changes = Family::<VersionChangeLabels, Counter>::default();
        registry.register(
            "version_changes",
            "Version changes of instances by change (Upgrade, Rollback, AutomaticRollback) and result (Started, Succeeded, Failed, Blocked)",
            version_changes.clone(),
        );
        let usage_records = Family::<KindLabels, Counter>::default();
        registry.register(
            "usage_records",
            "Usage records decided, by result (kind: Accepted, Duplicate, or the reason a record was refused)",
            usage_records.clone(),
        );
        let usage_rated = Family::<KindLabels, Counter>::default();
        registry.register(
            "usage_rated",
            "Quantities rated in settled usage periods, by dimension (kind)",
            usage_rated.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        Metrics {
            usage_records,
            usage_rated,
            registry,
            reconciles,
            errors,
            duration,
            writes,
            objects,
            instances,
            swept,
            drift,
            leader,
            version_changes,
        }
    }
}

impl Metrics {
    /// Counts one reconcile and its duration.
    pub fn reconciled(&self, kind: &str, took: Duration) {
        let l = KindLabels {
            kind: kind.to_string(),
        };
        self.reconciles.get_or_create(&l).inc();
        self.duration.get_or_create(&l).observe(took.as_secs_f64());
    }

    /// Counts one reconcile error.
    pub fn error(&self, kind: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts one write.
    pub fn wrote(&self, kind: &str, target: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.to_string(),
                target: target.to_string(),
            })
            .inc();
    }

    /// Counts one drift event (`what`: detected, corrected, backoff).
    pub fn drift(&self, kind: &str, what: &str) {
        self.drift
            .get_or_create(&WriteLabels {
                kind: kind.to_string(),
                target: what.to_string(),
            })
            .inc();
    }

    /// Counts one decided usage record.
    pub fn usage_record(&self, result: &str) {
        self.usage_records
            .get_or_create(&KindLabels {
                kind: result.to_string(),
            })
            .inc();
    }

    /// Adds a settled period's quantity of a dimension.
    pub fn usage_rated(&self, dimension: &str, quantity: i64) {
        self.usage_rated
            .get_or_create(&KindLabels {
                kind: dimension.to_string(),
            })
            .inc_by(u64::try_from(quantity).unwrap_or(0));
    }

    /// Counts one step of a version change.
    pub fn version_change(&self, change: &str, result: &str) {
        self.version_changes
            .get_or_create(&VersionChangeLabels {
                change: change.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts one orphan removed by a sweep.
    pub fn swept(&self, what: &str) {
        self.swept
            .get_or_create(&KindLabels {
                kind: what.to_string(),
            })
            .inc();
    }

    /// Renders the OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

import Metrics
import Prometheus

/// The process's Prometheus registry behind swift-metrics. swift-metrics takes one factory per
/// process, so the first node to start bootstraps it and any later one shares it.
enum SidecastMetrics {
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // A publish answered by a nearby Redis takes well under the default 5 ms first bucket.
        factory.durationHistogramBuckets["sidecast_redis_publish_duration_seconds"] = [
            .microseconds(100), .microseconds(250), .microseconds(500),
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }()
}

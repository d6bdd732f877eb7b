//! What librdkafka says, in Courier's log at a rate an operator can read.
//!
//! While a broker is down librdkafka reports every failed connection
//! attempt of every broker thread of every client, each twice (a `FAIL`
//! log line and a global error): hundreds of lines a minute per process
//! for one outage that the queue's probe ([`super::health`]) already
//! reports once, as a warning and as `courier_queue_reachable 0`. So
//! connection failures are logged once per [`EVERY`] with the count held
//! back (a TLS or SASL failure still shows, at that rate), the duplicate
//! global errors go to `debug`, and every other line keeps librdkafka's
//! own level.

use std::sync::LazyLock;
use std::time::Duration;

use courier_runtime::throttle::Throttle;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

/// At most one connection-failure line per this interval, per process.
const EVERY: Duration = Duration::from_secs(10);

static CONNECTION_FAILURES: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(EVERY));

/// The context of the producer, the topic admin and the probe: librdkafka's
/// logs, filtered as the module docs say.
pub(super) struct BrokerLogs;

impl ClientContext for BrokerLogs {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        log(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self::error(error, reason);
    }
}

/// [`BrokerLogs`] that also keeps the last connection failure librdkafka
/// reported (a refused connection, a failed TLS handshake or SASL
/// authentication), so a client that never got an answer can say why.
#[derive(Default)]
pub(super) struct RecordingLogs {
    last: parking_lot::Mutex<Option<String>>,
}

impl RecordingLogs {
    /// The last connection failure, if any.
    pub(super) fn last_failure(&self) -> Option<String> {
        self.last.lock().clone()
    }
}

impl ClientContext for RecordingLogs {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        let failure = facility == "FAIL"
            || matches!(
                level,
                RDKafkaLogLevel::Emerg
                    | RDKafkaLogLevel::Alert
                    | RDKafkaLogLevel::Critical
                    | RDKafkaLogLevel::Error
            );
        if failure {
            *self.last.lock() = Some(line.to_owned());
        }
        log(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // "1/1 brokers are down" says less than the failure before it.
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            *self.last.lock() = Some(reason.to_owned());
        }
        self::error(error, reason);
    }
}

/// It only watches a client that sends nothing.
impl rdkafka::producer::ProducerContext for RecordingLogs {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// A librdkafka log line (for [`ClientContext::log`]).
pub(super) fn log(level: RDKafkaLogLevel, facility: &str, line: &str) {
    // `FAIL` is librdkafka's facility for a broker connection that failed
    // or dropped.
    if facility == "FAIL" {
        if let Some(suppressed) = CONNECTION_FAILURES.admit() {
            tracing::warn!(target: "librdkafka", suppressed, "{line}");
        }
        return;
    }
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", facility, "{line}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{line}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{line}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{line}"),
    }
}

/// A librdkafka global error (for [`ClientContext::error`]).
pub(super) fn error(error: KafkaError, reason: &str) {
    match error.rdkafka_error_code() {
        // The same failure as the `FAIL` line logged above.
        Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
            tracing::debug!(target: "librdkafka", %error, reason, "broker unreachable");
        }
        _ => tracing::warn!(target: "librdkafka", %error, reason, "kafka client error"),
    }
}

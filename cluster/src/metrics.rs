//! HELP text and units of every metric the backends emit (discovery, the
//! PostgreSQL store of record, the Kafka queue), for the process that
//! installs a recorder to call once after installing it.

use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Describes every metric of this crate to the installed recorder.
pub fn describe() {
    // Discovery.
    describe_counter!(
        "courier_discovery_reregistrations_total",
        Unit::Count,
        "Times this process registered again after its discovery lease was lost, by backend."
    );
    describe_counter!(
        "courier_discovery_resyncs_total",
        Unit::Count,
        "Times a discovery watch failed and the view was read again (the last one kept meanwhile), by backend."
    );

    // The session store (Redis).
    describe_histogram!(
        "courier_redis_duration_seconds",
        Unit::Seconds,
        "Round trips to Redis, from sending to the reply, by kind (command or pipeline), failed ones included."
    );
    describe_counter!(
        "courier_redis_errors_total",
        Unit::Count,
        "Redis round trips that failed (I/O, timeout, a refusal), by kind."
    );

    // The store of record.
    describe_histogram!(
        "courier_store_batch_items",
        Unit::Count,
        "Writes committed together in one group commit, by shard."
    );
    describe_histogram!(
        "courier_store_commit_duration_seconds",
        Unit::Seconds,
        "Time one group commit took on its shard's primary, failed ones included, by shard."
    );
    describe_counter!(
        "courier_store_batch_failures_total",
        Unit::Count,
        "Group commits that failed (every write of the batch failed with it), by shard."
    );
    describe_counter!(
        "courier_store_expired_rows_total",
        Unit::Count,
        "Expired rows the retention sweep deleted, by shard."
    );
    describe_counter!(
        "courier_store_fallback_reads_total",
        Unit::Count,
        "Reads a standby served because the shard's primary was unreachable, by shard and node."
    );
    describe_counter!(
        "courier_store_page_reads_total",
        Unit::Count,
        "History pages read, by shard and the node that served them (a standby's host or primary)."
    );
    describe_counter!(
        "courier_store_moved_total",
        Unit::Count,
        "Reads and writes that met a bucket moved to another shard and waited for the new routing table."
    );
    describe_gauge!(
        "courier_store_replay_lag_seconds",
        Unit::Seconds,
        "How far a standby's replay was behind its primary at the last probe (NaN for a primary or a node that did not answer), by shard and node."
    );
    describe_gauge!(
        "courier_store_node_readable",
        Unit::Count,
        "1 while a node is in its shard's read list (a standby that answers within max_read_lag), else 0, by shard and node."
    );

    // The queue.
    describe_gauge!(
        "courier_queue_consumer_lag",
        Unit::Count,
        "Messages of a partition not yet consumed by the job that owns it (librdkafka's consumer_lag, every 5 s; 0 where this job does not own the partition), by partition."
    );
    describe_histogram!(
        "courier_queue_produce_duration_seconds",
        Unit::Seconds,
        "Time from handing a message to the producer to the broker acknowledging it (acks=all), delivered ones only."
    );
    describe_gauge!(
        "courier_queue_reachable",
        Unit::Count,
        "1 while a queue broker answers the health probe, 0 while none does."
    );
    describe_counter!(
        "courier_queue_losses_total",
        Unit::Count,
        "Times the broker's log went back (the topic gone, a high watermark fell): messages it had taken are lost."
    );
    describe_counter!(
        "courier_queue_producer_rebuilds_total",
        Unit::Count,
        "Queue producers replaced by a fresh one (forgotten by the broker, failed or wedged)."
    );
    describe_counter!(
        "courier_queue_consume_errors_total",
        Unit::Count,
        "Consume errors the queue client reported and the consumer skipped (each also logged, throttled)."
    );
}

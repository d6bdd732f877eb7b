//! HELP text and units of every metric job emits, for the process that
//! installs a recorder to call once after installing it.

use ::metrics::{describe_counter, describe_gauge, Unit};

/// Describes every metric of this crate to the installed recorder.
pub fn describe() {
    describe_counter!(
        "courier_job_envelopes_consumed_total",
        Unit::Count,
        "Queue messages taken for dispatch to comets."
    );
    describe_counter!(
        "courier_job_envelopes_invalid_total",
        Unit::Count,
        "Queue messages skipped as undeliverable (undecodable or naming nothing to deliver) and committed."
    );
    describe_counter!(
        "courier_job_consume_errors_total",
        Unit::Count,
        "Failed reads from the queue, retried with backoff."
    );
    describe_gauge!(
        "courier_job_in_flight",
        Unit::Count,
        "Queue messages taken and not yet finished (delivered or skipped)."
    );
    describe_counter!(
        "courier_job_commits_total",
        Unit::Count,
        "Queue offsets committed."
    );
    describe_counter!(
        "courier_job_commit_errors_total",
        Unit::Count,
        "Queue offset commits that failed (retried with the next completions)."
    );
    describe_gauge!(
        "courier_job_comets",
        Unit::Count,
        "Comets in discovery this job delivers to."
    );
    describe_counter!(
        "courier_job_pushes_total",
        Unit::Count,
        "Push calls a comet answered with success, by rpc."
    );
    describe_counter!(
        "courier_job_push_failures_total",
        Unit::Count,
        "Push call attempts to a comet that failed (retried unless refused for good or the comet is down), by rpc."
    );
    describe_counter!(
        "courier_job_pushes_rejected_total",
        Unit::Count,
        "Push calls a comet refused for good (given up, not retried), by rpc."
    );
    describe_counter!(
        "courier_job_comet_down_total",
        Unit::Count,
        "Times a comet stopped answering push calls and its pushes were skipped until a probe reached it."
    );
    describe_counter!(
        "courier_job_room_batches_split_total",
        Unit::Count,
        "Room batches a comet refused as too large, split in two and sent again."
    );
    describe_counter!(
        "courier_job_skipped_total",
        Unit::Count,
        "Pushes not made (their recipients read them from the store when they sync), by reason: unknown_comet, comet_behind, comet_gone or unreachable."
    );
}

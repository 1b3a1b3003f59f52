//! Journal records: each one describes a state change completely (ids,
//! times, computed backoffs are all in it), so applying the records of the
//! journal in order rebuilds exactly the state that produced them. Commands
//! are validated into records; only records change state.
//!
//! Encoding: a tag byte, a version byte (2), then the fields in order, with
//! the codec of `codec.rs`. A record with an unknown tag or version is an
//! error, never skipped. Version 1 lacked the retention byte limit of a
//! queue's configuration; such records still decode, with the default.

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::ids::{Attempt, JobId, Kind, LeaseHolder, Priority, QueueName, Timestamp};
use crate::job::{Payload, Progress};
use crate::queue::{QueueConfig, Retention, RetryPolicy};

/// A job as it was enqueued, with every default resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnqueuedJob {
    /// Its queue.
    pub queue: QueueName,
    /// Its kind.
    pub kind: Kind,
    /// Its input.
    pub payload: Payload,
    /// Its priority.
    pub priority: Priority,
    /// When it becomes available.
    pub run_at: Timestamp,
    /// Attempts allowed.
    pub max_attempts: u16,
    /// Lease timeout per attempt.
    pub timeout_ms: u32,
    /// Its unique key and when the key frees up (`None`: when the job goes).
    pub unique: Option<(String, Option<Timestamp>)>,
    /// Labels.
    pub tags: Vec<String>,
}

/// One lease in a [`Record::Leased`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The job.
    pub job: JobId,
    /// The new attempt.
    pub attempt: Attempt,
    /// When the lease expires unless extended.
    pub deadline: Timestamp,
}

/// A state change, as journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Jobs enqueued together, with consecutive ids from `first_id`.
    Enqueued {
        /// When.
        at: Timestamp,
        /// The first job's id.
        first_id: JobId,
        /// The jobs.
        jobs: Vec<EnqueuedJob>,
    },
    /// Jobs leased to one holder.
    Leased {
        /// When.
        at: Timestamp,
        /// Who holds the leases.
        holder: LeaseHolder,
        /// The leases.
        grants: Vec<LeaseGrant>,
    },
    /// A running attempt saved a checkpoint.
    Checkpointed {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// The checkpoint.
        checkpoint: Vec<u8>,
        /// Progress at that point.
        progress: Option<Progress>,
    },
    /// An attempt succeeded.
    Completed {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// When.
        at: Timestamp,
        /// Its result.
        result: Option<Vec<u8>>,
        /// Final progress.
        progress: Option<Progress>,
    },
    /// An attempt failed: retried at `retry_at`, or discarded if `None`.
    Failed {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// When.
        at: Timestamp,
        /// What went wrong (already truncated).
        error: String,
        /// When the job becomes available again; `None`: discarded.
        retry_at: Option<Timestamp>,
        /// A checkpoint returned with the failure (an interrupted attempt).
        checkpoint: Option<Vec<u8>>,
        /// Progress at that point.
        progress: Option<Progress>,
    },
    /// An attempt asked to run again later, without using up an attempt.
    Snoozed {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// When the job becomes available again.
        until: Timestamp,
        /// Progress at that point.
        progress: Option<Progress>,
    },
    /// An attempt gave its lease back unused (it never started, or was
    /// stopped for a shutdown): the job is available again and the attempt
    /// is not counted.
    Released {
        /// The job.
        job: JobId,
        /// The attempt.
        attempt: Attempt,
        /// A checkpoint returned with it.
        checkpoint: Option<Vec<u8>>,
        /// Progress at that point.
        progress: Option<Progress>,
    },
    /// A user cancelled a running job: its attempt is being interrupted.
    CancelRequested {
        /// The job.
        job: JobId,
        /// The running attempt.
        attempt: Attempt,
    },
    /// A job was cancelled (a pending one at once, a running one when its
    /// attempt ended).
    Cancelled {
        /// The job.
        job: JobId,
        /// When.
        at: Timestamp,
        /// The attempt that ended, for a running job.
        attempt: Option<Attempt>,
        /// A checkpoint returned by that attempt.
        checkpoint: Option<Vec<u8>>,
        /// Its progress.
        progress: Option<Progress>,
    },
    /// A finished job was sent back to run again.
    Retried {
        /// The job.
        job: JobId,
        /// When.
        at: Timestamp,
    },
    /// A queue's settings changed (pause and resume included).
    QueueConfigured {
        /// The queue.
        queue: QueueName,
        /// Its new settings.
        config: QueueConfig,
    },
    /// Available jobs deleted by a purge.
    Purged {
        /// The jobs.
        jobs: Vec<JobId>,
    },
    /// A job moved to another queue.
    Moved {
        /// The job.
        job: JobId,
        /// Its new queue.
        to: QueueName,
    },
    /// Finished jobs deleted by retention.
    Deleted {
        /// The jobs.
        jobs: Vec<JobId>,
    },
}

const VERSION: u8 = 2;
/// The oldest record version still read.
const OLDEST_VERSION: u8 = 1;

mod tag {
    pub const ENQUEUED: u8 = 1;
    pub const LEASED: u8 = 2;
    pub const CHECKPOINTED: u8 = 3;
    pub const COMPLETED: u8 = 4;
    pub const FAILED: u8 = 5;
    pub const SNOOZED: u8 = 6;
    pub const RELEASED: u8 = 7;
    pub const CANCEL_REQUESTED: u8 = 8;
    pub const CANCELLED: u8 = 9;
    pub const RETRIED: u8 = 10;
    pub const QUEUE_CONFIGURED: u8 = 11;
    pub const PURGED: u8 = 12;
    pub const MOVED: u8 = 13;
    pub const DELETED: u8 = 14;
}

impl Record {
    /// Appends the record's encoding to `encoder`.
    pub fn encode(&self, e: &mut Encoder) {
        match self {
            Record::Enqueued { at, first_id, jobs } => {
                header(e, tag::ENQUEUED);
                e.time(*at);
                e.job(*first_id);
                e.seq(jobs, encode_enqueued_job);
            }
            Record::Leased { at, holder, grants } => {
                header(e, tag::LEASED);
                e.time(*at);
                encode_holder(e, holder);
                e.seq(grants, |e, grant| {
                    e.job(grant.job);
                    e.uint(grant.attempt.into());
                    e.time(grant.deadline);
                });
            }
            Record::Checkpointed { job, attempt, checkpoint, progress } => {
                header(e, tag::CHECKPOINTED);
                e.job(*job);
                e.uint((*attempt).into());
                e.bytes(checkpoint);
                e.option(progress.as_ref(), encode_progress);
            }
            Record::Completed { job, attempt, at, result, progress } => {
                header(e, tag::COMPLETED);
                e.job(*job);
                e.uint((*attempt).into());
                e.time(*at);
                e.option(result.as_ref(), |e, v| e.bytes(v));
                e.option(progress.as_ref(), encode_progress);
            }
            Record::Failed { job, attempt, at, error, retry_at, checkpoint, progress } => {
                header(e, tag::FAILED);
                e.job(*job);
                e.uint((*attempt).into());
                e.time(*at);
                e.str(error);
                e.option(retry_at.as_ref(), |e, v| e.time(*v));
                e.option(checkpoint.as_ref(), |e, v| e.bytes(v));
                e.option(progress.as_ref(), encode_progress);
            }
            Record::Snoozed { job, attempt, until, progress } => {
                header(e, tag::SNOOZED);
                e.job(*job);
                e.uint((*attempt).into());
                e.time(*until);
                e.option(progress.as_ref(), encode_progress);
            }
            Record::Released { job, attempt, checkpoint, progress } => {
                header(e, tag::RELEASED);
                e.job(*job);
                e.uint((*attempt).into());
                e.option(checkpoint.as_ref(), |e, v| e.bytes(v));
                e.option(progress.as_ref(), encode_progress);
            }
            Record::CancelRequested { job, attempt } => {
                header(e, tag::CANCEL_REQUESTED);
                e.job(*job);
                e.uint((*attempt).into());
            }
            Record::Cancelled { job, at, attempt, checkpoint, progress } => {
                header(e, tag::CANCELLED);
                e.job(*job);
                e.time(*at);
                e.option(attempt.as_ref(), |e, v| e.uint((*v).into()));
                e.option(checkpoint.as_ref(), |e, v| e.bytes(v));
                e.option(progress.as_ref(), encode_progress);
            }
            Record::Retried { job, at } => {
                header(e, tag::RETRIED);
                e.job(*job);
                e.time(*at);
            }
            Record::QueueConfigured { queue, config } => {
                header(e, tag::QUEUE_CONFIGURED);
                e.str(queue.as_str());
                encode_config(e, config);
            }
            Record::Purged { jobs } => {
                header(e, tag::PURGED);
                e.seq(jobs, |e, job| e.job(*job));
            }
            Record::Moved { job, to } => {
                header(e, tag::MOVED);
                e.job(*job);
                e.str(to.as_str());
            }
            Record::Deleted { jobs } => {
                header(e, tag::DELETED);
                e.seq(jobs, |e, job| e.job(*job));
            }
        }
    }

    /// Encodes the record into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut encoder = Encoder::new();
        self.encode(&mut encoder);
        encoder.into_bytes()
    }

    /// Decodes one record that fills `bytes` exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut d = Decoder::new(bytes);
        let record = Record::decode(&mut d)?;
        d.finish("record")?;
        Ok(record)
    }

    /// Decodes one record.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Record, DecodeError> {
        let tag = d.u8("record tag")?;
        let version = d.u8("record version")?;
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(d.error("record version", "unsupported version (written by a newer corvee?)"));
        }
        let attempt = |d: &mut Decoder<'_>| d.u32("attempt");
        Ok(match tag {
            tag::ENQUEUED => Record::Enqueued {
                at: d.time("at")?,
                first_id: d.job("first id")?,
                jobs: d.seq("jobs", decode_enqueued_job)?,
            },
            tag::LEASED => Record::Leased {
                at: d.time("at")?,
                holder: decode_holder(d)?,
                grants: d.seq("grants", |d| {
                    Ok(LeaseGrant { job: d.job("job")?, attempt: attempt(d)?, deadline: d.time("deadline")? })
                })?,
            },
            tag::CHECKPOINTED => Record::Checkpointed {
                job: d.job("job")?,
                attempt: attempt(d)?,
                checkpoint: d.bytes("checkpoint")?.to_vec(),
                progress: d.option("progress", decode_progress)?,
            },
            tag::COMPLETED => Record::Completed {
                job: d.job("job")?,
                attempt: attempt(d)?,
                at: d.time("at")?,
                result: d.option("result", |d| d.bytes("result").map(<[u8]>::to_vec))?,
                progress: d.option("progress", decode_progress)?,
            },
            tag::FAILED => Record::Failed {
                job: d.job("job")?,
                attempt: attempt(d)?,
                at: d.time("at")?,
                error: d.str("error")?,
                retry_at: d.option("retry at", |d| d.time("retry at"))?,
                checkpoint: d.option("checkpoint", |d| d.bytes("checkpoint").map(<[u8]>::to_vec))?,
                progress: d.option("progress", decode_progress)?,
            },
            tag::SNOOZED => Record::Snoozed {
                job: d.job("job")?,
                attempt: attempt(d)?,
                until: d.time("until")?,
                progress: d.option("progress", decode_progress)?,
            },
            tag::RELEASED => Record::Released {
                job: d.job("job")?,
                attempt: attempt(d)?,
                checkpoint: d.option("checkpoint", |d| d.bytes("checkpoint").map(<[u8]>::to_vec))?,
                progress: d.option("progress", decode_progress)?,
            },
            tag::CANCEL_REQUESTED => Record::CancelRequested { job: d.job("job")?, attempt: attempt(d)? },
            tag::CANCELLED => Record::Cancelled {
                job: d.job("job")?,
                at: d.time("at")?,
                attempt: d.option("attempt", attempt)?,
                checkpoint: d.option("checkpoint", |d| d.bytes("checkpoint").map(<[u8]>::to_vec))?,
                progress: d.option("progress", decode_progress)?,
            },
            tag::RETRIED => Record::Retried { job: d.job("job")?, at: d.time("at")? },
            tag::QUEUE_CONFIGURED => {
                Record::QueueConfigured { queue: decode_queue_name(d)?, config: decode_config(d, version)? }
            }
            tag::PURGED => Record::Purged { jobs: d.seq("jobs", |d| d.job("job"))? },
            tag::MOVED => Record::Moved { job: d.job("job")?, to: decode_queue_name(d)? },
            tag::DELETED => Record::Deleted { jobs: d.seq("jobs", |d| d.job("job"))? },
            _ => return Err(d.error("record tag", "unknown record tag")),
        })
    }
}

fn header(e: &mut Encoder, tag: u8) {
    e.u8(tag);
    e.u8(VERSION);
}

pub(crate) fn encode_payload(e: &mut Encoder, payload: &Payload) {
    match payload {
        Payload::Inline(bytes) => {
            e.u8(0);
            e.bytes(bytes);
        }
        Payload::File { name, len } => {
            e.u8(1);
            e.str(name);
            e.uint(*len);
        }
    }
}

pub(crate) fn decode_payload(d: &mut Decoder<'_>) -> Result<Payload, DecodeError> {
    match d.u8("payload kind")? {
        0 => Ok(Payload::Inline(d.bytes("payload")?.to_vec())),
        1 => Ok(Payload::File { name: d.str("payload file")?, len: d.uint("payload length")? }),
        _ => Err(d.error("payload kind", "unknown payload kind")),
    }
}

fn encode_enqueued_job(e: &mut Encoder, job: &EnqueuedJob) {
    e.str(job.queue.as_str());
    e.str(job.kind.as_str());
    encode_payload(e, &job.payload);
    e.uint(job.priority.0.into());
    e.time(job.run_at);
    e.uint(job.max_attempts.into());
    e.uint(job.timeout_ms.into());
    e.option(job.unique.as_ref(), |e, (key, expires)| {
        e.str(key);
        e.option(expires.as_ref(), |e, at| e.time(*at));
    });
    e.seq(&job.tags, |e, tag| e.str(tag));
}

fn decode_enqueued_job(d: &mut Decoder<'_>) -> Result<EnqueuedJob, DecodeError> {
    Ok(EnqueuedJob {
        queue: decode_queue_name(d)?,
        kind: decode_kind(d)?,
        payload: decode_payload(d)?,
        priority: Priority(d.u32("priority")?),
        run_at: d.time("run at")?,
        max_attempts: d.u16("max attempts")?,
        timeout_ms: d.u32("timeout")?,
        unique: d.option("unique", |d| Ok((d.str("unique key")?, d.option("unique expiry", |d| d.time("expiry"))?)))?,
        tags: d.seq("tags", |d| d.str("tag"))?,
    })
}

pub(crate) fn decode_queue_name(d: &mut Decoder<'_>) -> Result<QueueName, DecodeError> {
    let at = d.position();
    let name = d.str("queue name")?;
    QueueName::new(name).map_err(|_| DecodeError { what: "queue name", at, problem: "invalid queue name" })
}

pub(crate) fn decode_kind(d: &mut Decoder<'_>) -> Result<Kind, DecodeError> {
    let at = d.position();
    let kind = d.str("kind")?;
    Kind::new(kind).map_err(|_| DecodeError { what: "kind", at, problem: "invalid kind" })
}

pub(crate) fn encode_progress(e: &mut Encoder, progress: &Progress) {
    e.uint(progress.done);
    e.option(progress.total.as_ref(), |e, v| e.uint(*v));
    e.option(progress.message.as_ref(), |e, v| e.str(v));
}

pub(crate) fn decode_progress(d: &mut Decoder<'_>) -> Result<Progress, DecodeError> {
    Ok(Progress {
        done: d.uint("progress done")?,
        total: d.option("progress total", |d| d.uint("total"))?,
        message: d.option("progress message", |d| d.str("message"))?,
    })
}

pub(crate) fn encode_holder(e: &mut Encoder, holder: &LeaseHolder) {
    match holder {
        LeaseHolder::Supervised { node } => {
            e.u8(0);
            e.uint(*node);
        }
        LeaseHolder::External { client } => {
            e.u8(1);
            e.str(client);
        }
    }
}

pub(crate) fn decode_holder(d: &mut Decoder<'_>) -> Result<LeaseHolder, DecodeError> {
    match d.u8("lease holder")? {
        0 => Ok(LeaseHolder::Supervised { node: d.uint("node")? }),
        1 => Ok(LeaseHolder::External { client: d.str("client")? }),
        _ => Err(d.error("lease holder", "unknown holder kind")),
    }
}

pub(crate) fn encode_config(e: &mut Encoder, config: &QueueConfig) {
    e.bool(config.paused);
    e.option(config.concurrency.as_ref(), |e, v| e.uint((*v).into()));
    e.option(config.capacity.as_ref(), |e, v| e.uint(*v));
    e.uint(config.retry.base_ms);
    e.uint(config.retry.max_ms);
    e.u8(config.retry.jitter_percent);
    e.uint(config.default_max_attempts.into());
    e.uint(config.default_timeout_ms.into());
    e.uint(config.retention.completed_ms);
    e.uint(config.retention.cancelled_ms);
    e.uint(config.retention.discarded_ms);
    e.uint(config.retention.max_completed);
    e.uint(config.retention.max_finished_bytes);
}

/// Decodes a queue configuration written in `version` of the record (or
/// snapshot) format: version 1 had no byte limit for finished jobs.
pub(crate) fn decode_config(d: &mut Decoder<'_>, version: u8) -> Result<QueueConfig, DecodeError> {
    Ok(QueueConfig {
        paused: d.bool("paused")?,
        concurrency: d.option("concurrency", |d| d.u32("concurrency"))?,
        capacity: d.option("capacity", |d| d.uint("capacity"))?,
        retry: RetryPolicy {
            base_ms: d.uint("retry base")?,
            max_ms: d.uint("retry max")?,
            jitter_percent: d.u8("jitter")?,
        },
        default_max_attempts: d.u16("default max attempts")?,
        default_timeout_ms: d.u32("default timeout")?,
        retention: Retention {
            completed_ms: d.uint("retention")?,
            cancelled_ms: d.uint("retention")?,
            discarded_ms: d.uint("retention")?,
            max_completed: d.uint("retention")?,
            max_finished_bytes: if version >= 2 {
                d.uint("retention")?
            } else {
                Retention::default().max_finished_bytes
            },
        },
    })
}

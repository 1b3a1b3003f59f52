//! The whole state as bytes, for the journal's snapshots: written and read
//! as a stream of frames (each at most ~1 MiB) so neither side holds the
//! whole encoding in memory. Indexes are not stored; they are rebuilt on
//! load, which is what keeps the format small and the loader the only place
//! that must agree with the indexes.
//!
//! ```text
//! snapshot = frame*  · end frame
//! frame    = length u32 (little-endian, > 0) · body
//! end      = length 0
//! first frame body: "CORVEECS" · version u8 (2) · next_id · clock
//!                   · queues (name, config)* · kinds (name)*
//! later frame bodies: job*  (each: id, fields, extra)
//! ```

use std::io::{self, Read, Write};

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::ids::{JobId, Timestamp};
use crate::job::{AttemptError, Limits};
use crate::record::{
    decode_config, decode_holder, decode_kind, decode_progress, decode_queue_name, encode_config, encode_holder,
    encode_progress,
};
use crate::state::CoreState;
use crate::table::{Extra, Job, Phase};

const MAGIC: &[u8; 8] = b"CORVEECS";
/// Version 2 added the retention byte limit to queue configurations;
/// version 1 snapshots still load, with the default limit.
const VERSION: u8 = 2;
const OLDEST_VERSION: u8 = 1;
const FRAME_TARGET: usize = 1 << 20;
/// The largest frame a reader accepts (a single job can exceed the target).
const MAX_FRAME: u32 = 256 << 20;

/// Why a snapshot did not load.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading failed.
    #[error("reading the state snapshot failed: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a valid snapshot.
    #[error("the state snapshot is malformed: {0}")]
    Decode(#[from] DecodeError),
    /// The bytes decode but describe an impossible state.
    #[error("the state snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

impl CoreState {
    /// Writes the state to `out` as a snapshot.
    pub fn write_snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut frame = Encoder::new();
        for &byte in MAGIC {
            frame.u8(byte);
        }
        frame.u8(VERSION);
        frame.uint(self.next_id);
        frame.time(self.clock);
        frame.seq(&self.queues, |e, queue| {
            e.str(queue.name.as_str());
            encode_config(e, &queue.config);
        });
        frame.seq(&self.kinds, |e, kind| e.str(kind.as_str()));
        let mut frame = flush_frame(out, frame)?;
        for (id, job) in self.jobs.iter_after(JobId(0)) {
            encode_job(&mut frame, id, job);
            if frame.len() >= FRAME_TARGET {
                frame = flush_frame(out, frame)?;
            }
        }
        if !frame.is_empty() {
            flush_frame(out, frame)?;
        }
        out.write_all(&0u32.to_le_bytes())
    }

    /// Reads a state written by [`CoreState::write_snapshot`].
    pub fn read_snapshot(input: &mut dyn Read, limits: Limits) -> Result<CoreState, SnapshotError> {
        let mut state = CoreState::new(limits);
        let mut buffer = Vec::new();
        if !read_frame(input, &mut buffer)? {
            return Err(SnapshotError::Inconsistent("the snapshot has no header frame".into()));
        }
        {
            let mut d = Decoder::new(&buffer);
            for &expected in MAGIC {
                if d.u8("magic")? != expected {
                    return Err(SnapshotError::Inconsistent("not a corvee state snapshot (bad magic)".into()));
                }
            }
            let version = d.u8("version")?;
            if !(OLDEST_VERSION..=VERSION).contains(&version) {
                return Err(SnapshotError::Inconsistent(format!("snapshot version {version} is not supported")));
            }
            state.next_id = d.uint("next id")?;
            state.clock = d.time("clock")?;
            let queues = d.seq("queues", |d| Ok((decode_queue_name(d)?, decode_config(d, version)?)))?;
            for (name, config) in queues {
                let id = state.queue_id_or_create(&name);
                state.queues[id as usize].config = config;
            }
            let kinds = d.seq("kinds", decode_kind)?;
            for kind in kinds {
                state.kind_id_or_create(&kind);
            }
            d.finish("snapshot header")?;
        }
        let mut finished: Vec<(Timestamp, JobId)> = Vec::new();
        let mut last_id = 0u64;
        while read_frame(input, &mut buffer)? {
            let mut d = Decoder::new(&buffer);
            while !d.is_done() {
                let (id, job) = decode_job(&mut d)?;
                if id.0 <= last_id || id.0 >= state.next_id {
                    return Err(SnapshotError::Inconsistent(format!("job id {id} out of order or beyond the next id")));
                }
                last_id = id.0;
                if job.queue as usize >= state.queues.len() || job.kind as usize >= state.kinds.len() {
                    return Err(SnapshotError::Inconsistent(format!("job {id} refers to an unknown queue or kind")));
                }
                state.restore_job(id, job, &mut finished)?;
            }
        }
        // Retention order is finish order.
        finished.sort_unstable();
        for (at, id) in finished {
            state.restore_finished(id, at);
        }
        Ok(state)
    }
}

fn flush_frame(out: &mut dyn Write, frame: Encoder) -> io::Result<Encoder> {
    let bytes = frame.into_bytes();
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("snapshot frame over 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&bytes)?;
    Ok(Encoder::with_buffer({
        let mut reuse = bytes;
        reuse.clear();
        reuse
    }))
}

/// Reads one frame into `buffer`; false at the end frame.
fn read_frame(input: &mut dyn Read, buffer: &mut Vec<u8>) -> Result<bool, SnapshotError> {
    let mut length = [0u8; 4];
    input.read_exact(&mut length)?;
    let length = u32::from_le_bytes(length);
    if length == 0 {
        return Ok(false);
    }
    if length > MAX_FRAME {
        return Err(SnapshotError::Inconsistent(format!("snapshot frame of {length} bytes is too large")));
    }
    buffer.clear();
    buffer.resize(length as usize, 0);
    input.read_exact(buffer)?;
    Ok(true)
}

fn phase_code(phase: Phase) -> u8 {
    match phase {
        Phase::Pending => 0,
        Phase::Running => 1,
        Phase::Completed => 2,
        Phase::Cancelled => 3,
        Phase::Discarded => 4,
    }
}

fn encode_job(e: &mut Encoder, id: JobId, job: &Job) {
    e.job(id);
    e.uint(job.queue.into());
    e.uint(job.kind.into());
    e.uint(job.priority.into());
    e.uint(job.timeout_ms.into());
    e.uint(job.attempt.into());
    e.uint(job.attempts_used.into());
    e.uint(job.max_attempts.into());
    e.u8(phase_code(job.phase));
    e.u8(job.flags);
    e.time(job.run_at);
    e.time(job.created_at);
    e.bytes(&job.payload);
    e.option(job.extra.as_deref(), |e, extra| {
        e.option(extra.payload_file.as_ref(), |e, (name, len)| {
            e.str(name);
            e.uint(*len);
        });
        e.seq(&extra.tags, |e, tag| e.str(tag));
        e.option(extra.unique.as_ref(), |e, (key, expires)| {
            e.str(key);
            e.option(expires.as_ref(), |e, at| e.time(*at));
        });
        e.option(extra.checkpoint.as_ref(), |e, v| e.bytes(v));
        e.option(extra.result.as_ref(), |e, v| e.bytes(v));
        e.seq(&extra.errors, |e, error| {
            e.uint(error.attempt.into());
            e.time(error.at);
            e.str(&error.error);
        });
        e.option(extra.progress.as_ref(), encode_progress);
        e.option(extra.attempted_at.as_ref(), |e, at| e.time(*at));
        e.option(extra.finished_at.as_ref(), |e, at| e.time(*at));
        e.option(extra.holder.as_ref(), encode_holder);
        e.option(extra.lease_deadline.as_ref(), |e, at| e.time(*at));
    });
}

fn decode_job(d: &mut Decoder<'_>) -> Result<(JobId, Job), DecodeError> {
    let id = d.job("job id")?;
    let job = Job {
        queue: d.u32("queue")?,
        kind: d.u32("kind")?,
        priority: d.u32("priority")?,
        timeout_ms: d.u32("timeout")?,
        attempt: d.u32("attempt")?,
        attempts_used: d.u16("attempts used")?,
        max_attempts: d.u16("max attempts")?,
        phase: match d.u8("phase")? {
            0 => Phase::Pending,
            1 => Phase::Running,
            2 => Phase::Completed,
            3 => Phase::Cancelled,
            4 => Phase::Discarded,
            _ => return Err(d.error("phase", "unknown phase")),
        },
        flags: d.u8("flags")?,
        run_at: d.time("run at")?,
        created_at: d.time("created at")?,
        payload: d.bytes("payload")?.into(),
        extra: d.option("extra", |d| {
            Ok(std::sync::Arc::new(Extra {
                payload_file: d.option("payload file", |d| Ok((d.str("file")?, d.uint("length")?)))?,
                tags: d.seq("tags", |d| d.str("tag"))?,
                unique: d.option("unique", |d| Ok((d.str("key")?, d.option("expiry", |d| d.time("expiry"))?)))?,
                checkpoint: d.option("checkpoint", |d| d.bytes("checkpoint").map(<[u8]>::to_vec))?,
                result: d.option("result", |d| d.bytes("result").map(<[u8]>::to_vec))?,
                errors: d.seq("errors", |d| {
                    Ok(AttemptError { attempt: d.u32("attempt")?, at: d.time("at")?, error: d.str("error")? })
                })?,
                progress: d.option("progress", decode_progress)?,
                attempted_at: d.option("attempted at", |d| d.time("at"))?,
                finished_at: d.option("finished at", |d| d.time("at"))?,
                holder: d.option("holder", decode_holder)?,
                lease_deadline: d.option("deadline", |d| d.time("at"))?,
            }))
        })?,
    };
    Ok((id, job))
}

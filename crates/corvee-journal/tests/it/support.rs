//! Shared pieces of the journal tests: deterministic payloads that identify
//! their own LSN, a standard workload, and the invariant checks run after
//! every recovery.

use corvee_journal::{Journal, JournalOptions, Lsn};

/// The payload the workloads write at `lsn`. Its length cycles through
/// sizes around sector boundaries; its bytes are derived from the LSN, so a
/// record that was never written (or a misplaced one) cannot match.
pub fn payload_for(lsn: u64) -> Vec<u8> {
    const SIZES: [usize; 12] = [0, 1, 15, 100, 479, 480, 481, 495, 1000, 4096, 9000, 200];
    let len = SIZES[(lsn as usize * 7) % SIZES.len()];
    let mut state = lsn.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The snapshot body the workloads write at `lsn`.
pub fn snapshot_body_for(lsn: u64) -> Vec<u8> {
    let mut body = format!("state after LSN {lsn}\n").into_bytes();
    body.extend(payload_for(lsn * 31 + 5));
    body
}

/// Small segments so a short workload rolls over several times.
pub fn small_options() -> JournalOptions {
    JournalOptions {
        segment_bytes: 16 * 1024,
        max_batch_bytes: 8 * 1024,
        background_preallocation: false,
        ..JournalOptions::default()
    }
}

/// What a workload achieved before it stopped.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// The highest LSN whose append was acknowledged.
    pub acked: u64,
    /// LSN ranges appended atomically as groups.
    pub groups: Vec<(u64, u64)>,
    /// The LSN of the last committed snapshot.
    pub snapshot: Option<u64>,
}

/// A deterministic mix of single appends, atomic groups, unwaited appends
/// followed by a flush, and snapshots with segment removal. Stops at the
/// first error (a crash or an injected fault) and returns what was acked.
pub fn run_workload(journal: &Journal, steps: u32, progress: &mut Progress) -> Result<(), String> {
    for step in 0..steps {
        let next = journal.next_lsn().get();
        match step % 10 {
            7 => {
                let payloads: Vec<Vec<u8>> = (next..next + 3).map(payload_for).collect();
                let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                let ticket = journal.append_group(&slices).map_err(|e| e.to_string())?;
                progress.groups.push((next, next + 2));
                ticket.wait().map_err(|e| e.to_string())?;
                progress.acked = next + 2;
            }
            8 if step % 20 == 8 && progress.acked > 0 => {
                let lsn = progress.acked;
                let mut writer = journal.begin_snapshot(Lsn::new(lsn).unwrap()).map_err(|e| e.to_string())?;
                std::io::Write::write_all(&mut writer, &snapshot_body_for(lsn)).map_err(|e| e.to_string())?;
                journal.commit_snapshot(writer).map_err(|e| e.to_string())?;
                progress.snapshot = Some(lsn);
                journal.remove_segments_before_snapshot().map_err(|e| e.to_string())?;
            }
            9 => {
                for lsn in next..next + 5 {
                    journal.append(&payload_for(lsn)).map_err(|e| e.to_string())?;
                }
                journal.flush().map_err(|e| e.to_string())?;
                progress.acked = next + 4;
            }
            _ => {
                let lsn =
                    journal.append(&payload_for(next)).map_err(|e| e.to_string())?.wait().map_err(|e| e.to_string())?;
                assert_eq!(lsn.get(), next);
                progress.acked = next;
            }
        }
    }
    Ok(())
}

/// Checks a freshly recovered journal against what the workload knows:
/// every acknowledged record is present, in order and byte-identical;
/// every record present is one the workload wrote at that LSN; atomic
/// groups are all there or not at all; the snapshot is one that was
/// written. Returns the last LSN present.
pub fn check_recovered(journal: &Journal, progress: &Progress) -> u64 {
    let first = journal.first_lsn().get();
    let mut expected = first;
    for record in journal.read_from(journal.first_lsn()).expect("read from the first LSN") {
        let (lsn, payload) = record.unwrap_or_else(|error| panic!("reading back failed: {error}"));
        assert_eq!(lsn.get(), expected, "LSNs must be contiguous");
        assert!(payload == payload_for(lsn.get()), "record {lsn} is not what was written there");
        expected += 1;
    }
    let last = expected - 1;
    assert_eq!(journal.durable_lsn().map_or(0, Lsn::get), last);
    assert!(last >= progress.acked, "acknowledged LSN {} lost: the log ends at {last}", progress.acked);
    for &(group_first, group_last) in &progress.groups {
        assert!(
            last < group_first || last >= group_last,
            "group {group_first}..={group_last} is only partly present (log ends at {last})"
        );
    }
    if let Some(snapshot) = journal.snapshot_lsn() {
        assert!(snapshot.get() <= last, "snapshot {snapshot} describes records beyond the log end {last}");
        assert!(first <= snapshot.get() + 1, "gap between snapshot {snapshot} and first LSN {first}");
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut journal.snapshot().unwrap().unwrap(), &mut body).unwrap();
        assert!(body == snapshot_body_for(snapshot.get()), "snapshot {snapshot} has the wrong body");
    } else {
        assert_eq!(first, 1, "records were removed without a snapshot");
    }
    if let Some(snapshot) = progress.snapshot {
        // A committed snapshot may only be superseded by a newer one.
        assert!(journal.snapshot_lsn().is_some_and(|lsn| lsn.get() >= snapshot), "committed snapshot {snapshot} lost");
    }
    last
}

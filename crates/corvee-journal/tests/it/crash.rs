//! Crash at every mutating call of a workload, under every way the page
//! cache can be lost, and check what recovery finds. Then the same for
//! injected I/O errors (EIO, ENOSPC, short writes), once and persistent.

use corvee_journal::sim::{Call, CrashMode, Fault, FaultKind, SimDisk};
use corvee_journal::{AppendError, Journal};

use crate::support::{check_recovered, payload_for, run_workload, small_options, Progress};

const STEPS: u32 = 60;
const MODES: [CrashMode; 4] =
    [CrashMode::DropUnsynced, CrashMode::TornSectors, CrashMode::TornPages, CrashMode::KeepAll];

/// Opens after a crash (must succeed: a crash is not corruption), checks
/// the invariants, then proves the journal is usable: appends more,
/// closes, reopens and checks again.
fn recover_and_check(disk: &SimDisk, progress: &Progress, context: &str) {
    let (journal, report) = Journal::open_with_storage(disk.storage(), small_options())
        .unwrap_or_else(|error| panic!("{context}: reopening after a crash failed: {error}"));
    let last = check_recovered(&journal, progress);
    assert_eq!(report.last_lsn.map_or(0, |lsn| lsn.get()), last, "{context}: report disagrees: {report}");
    let mut after = progress.clone();
    for lsn in last + 1..=last + 3 {
        assert_eq!(journal.append(&payload_for(lsn)).unwrap().wait().unwrap().get(), lsn);
    }
    after.acked = last + 3;
    journal.close().unwrap();
    let (journal, report) = Journal::open_with_storage(disk.storage(), small_options()).unwrap();
    assert_eq!(report.torn_tail, None, "{context}: a clean close left a torn tail");
    assert!(report.clean_shutdown, "{context}: a clean close left no close marker");
    check_recovered(&journal, &after);
}

#[test]
fn crash_at_every_mutating_call_loses_nothing_acknowledged() {
    let dry = SimDisk::new(1);
    let (journal, _) = Journal::open_with_storage(dry.storage(), small_options()).unwrap();
    run_workload(&journal, STEPS, &mut Progress::default()).unwrap();
    journal.close().unwrap();
    let total_calls = dry.mutating_calls();
    assert!(total_calls > 100, "the workload should exercise many calls, made {total_calls}");

    let mut tried = 0;
    let mut torn_tails = 0;
    for crash_point in 0..=total_calls {
        for (mode_index, mode) in MODES.into_iter().enumerate() {
            let disk = SimDisk::new(crash_point * 4 + mode_index as u64 + 1);
            disk.crash_after(crash_point);
            let mut progress = Progress::default();
            if let Ok((journal, _)) = Journal::open_with_storage(disk.storage(), small_options()) {
                let _ = run_workload(&journal, STEPS, &mut progress);
                drop(journal);
            }
            disk.reboot(mode);
            disk.clear_faults();
            let context = format!("crash at call {crash_point} of {total_calls}, {mode:?}");
            {
                let (journal, report) = Journal::open_with_storage(disk.storage(), small_options())
                    .unwrap_or_else(|error| panic!("{context}: {error}"));
                torn_tails += usize::from(report.torn_tail.is_some());
                drop(journal);
            }
            recover_and_check(&disk, &progress, &context);
            tried += 1;
        }
    }
    println!(
        "crash points tried: {tried} ({} calls x {} modes); torn tails recovered: {torn_tails}",
        total_calls + 1,
        MODES.len()
    );
    assert!(torn_tails > 0, "some crash must have torn a batch");
}

#[test]
fn injected_io_errors_fail_stop_and_reopen_recovers() {
    let dry = SimDisk::new(2);
    let (journal, _) = Journal::open_with_storage(dry.storage(), small_options()).unwrap();
    run_workload(&journal, STEPS, &mut Progress::default()).unwrap();
    journal.close().unwrap();
    let calls = [Call::Write, Call::SyncData, Call::Create, Call::Rename, Call::Remove, Call::SyncDir];

    let mut tried = 0;
    let mut failed_stops = 0;
    let mut survived_errors = 0;
    for call in calls {
        for nth in 0..dry.calls(call) {
            for kind in [FaultKind::Eio, FaultKind::NoSpace, FaultKind::ShortWrite] {
                for persistent in [false, true] {
                    let disk = SimDisk::new(nth * 13 + 7);
                    disk.inject(Fault { call, nth, kind, persistent });
                    let mut progress = Progress::default();
                    let outcome = match Journal::open_with_storage(disk.storage(), small_options()) {
                        Ok((journal, _)) => {
                            let outcome = run_workload(&journal, STEPS, &mut progress);
                            if outcome.is_err() {
                                if journal.failure().is_some() {
                                    // Fail-stop: nothing more is accepted.
                                    let more = journal.append(b"more");
                                    assert!(
                                        matches!(more, Err(AppendError::Failed(_))),
                                        "{call:?}#{nth} {kind:?}: stopped journal accepted an append"
                                    );
                                    failed_stops += 1;
                                } else {
                                    // A failed snapshot write leaves the log itself
                                    // working (unless the fault persists and the
                                    // log's own next write fails too).
                                    let next = journal.next_lsn().get();
                                    match journal.append(&payload_for(next)).and_then(|ticket| ticket.wait()) {
                                        Ok(lsn) => {
                                            assert_eq!(lsn.get(), next);
                                            progress.acked = next;
                                        }
                                        Err(error) => {
                                            assert!(persistent, "{call:?}#{nth} {kind:?}: one-off snapshot fault broke the log: {error}");
                                            assert!(journal.failure().is_some());
                                        }
                                    }
                                    survived_errors += 1;
                                }
                            }
                            drop(journal);
                            outcome
                        }
                        Err(error) => Err(format!("open failed: {error}")),
                    };
                    let context = format!("{call:?} #{nth} {kind:?} persistent={persistent}: {outcome:?}");
                    // Reopen in the same "boot": pages a failed fdatasync
                    // marked clean are still in the cache but not on disk.
                    disk.clear_faults();
                    {
                        let (journal, _) = Journal::open_with_storage(disk.storage(), small_options())
                            .unwrap_or_else(|error| panic!("{context}: reopen without reboot failed: {error}"));
                        let last = check_recovered(&journal, &progress);
                        // Acknowledged appends after a record that only the
                        // cache held would leave a hole on disk: prove there
                        // is none by losing power next.
                        for lsn in last + 1..=last + 3 {
                            assert_eq!(journal.append(&payload_for(lsn)).unwrap().wait().unwrap().get(), lsn);
                        }
                        progress.acked = last + 3;
                        drop(journal);
                    }
                    // And after power loss, what is on the medium must hold too.
                    disk.reboot(CrashMode::DropUnsynced);
                    recover_and_check(&disk, &progress, &context);
                    tried += 1;
                }
            }
        }
    }
    println!(
        "injected I/O errors tried: {tried}; fail-stops: {failed_stops}; non-fatal snapshot errors: {survived_errors}"
    );
    assert!(failed_stops > 0);
}

#[test]
fn a_full_disk_fails_appends_cleanly_and_a_reopen_after_freeing_space_has_everything() {
    let disk = SimDisk::new(3);
    let (journal, _) = Journal::open_with_storage(disk.storage(), small_options()).unwrap();
    // Room for the current segment and not much more: the next roll fails.
    disk.set_capacity(Some(disk.used_bytes() + 4096));
    let mut progress = Progress::default();
    let error = run_workload(&journal, 1000, &mut progress).expect_err("the disk must fill up");
    let failure = journal.failure().expect("the journal stopped");
    assert!(failure.is_no_space(), "expected ENOSPC, got {failure} ({error})");
    assert!(progress.acked > 0);
    drop(journal);

    // Still full: recovery itself needs no new space.
    let (journal, _) = Journal::open_with_storage(disk.storage(), small_options()).unwrap();
    check_recovered(&journal, &progress);
    drop(journal);

    disk.set_capacity(None);
    disk.reboot(CrashMode::DropUnsynced);
    recover_and_check(&disk, &progress, "after freeing space");
}

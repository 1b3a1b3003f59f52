//! Model test: random sequences of appends, flushes, snapshots, segment
//! removal, reads, clean reopens and crashes, run against the journal on
//! the simulated disk and against a plain in-memory model of what must be
//! there.

use corvee_journal::sim::{CrashMode, SimDisk};
use corvee_journal::{Journal, JournalOptions, Lsn, Ticket};
use proptest::prelude::*;

use crate::support::snapshot_body_for;

#[derive(Clone, Debug)]
enum Op {
    /// Appends a group of `sizes.len()` records; waits for it if `wait`.
    Append {
        sizes: Vec<usize>,
        wait: bool,
    },
    Flush,
    Snapshot,
    RemoveSegments,
    /// Reads from a point chosen by `at` (a fraction of the present range).
    Read {
        at: u8,
    },
    Reopen,
    Crash(CrashMode),
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![Just(0usize), 1usize..64, 64usize..1200, Just(496), 3000usize..9000];
    let crash = prop_oneof![
        Just(CrashMode::DropUnsynced),
        Just(CrashMode::TornSectors),
        Just(CrashMode::TornPages),
        Just(CrashMode::KeepAll)
    ];
    prop_oneof![
        8 => (prop::collection::vec(size, 1..4), any::<bool>()).prop_map(|(sizes, wait)| Op::Append { sizes, wait }),
        1 => Just(Op::Flush),
        1 => Just(Op::Snapshot),
        1 => Just(Op::RemoveSegments),
        1 => any::<u8>().prop_map(|at| Op::Read { at }),
        1 => Just(Op::Reopen),
        1 => crash.prop_map(Op::Crash),
    ]
}

fn options() -> JournalOptions {
    JournalOptions { segment_bytes: 12 * 1024, max_batch_bytes: 4096, ..JournalOptions::default() }
}

fn payload(lsn: u64, size: usize) -> Vec<u8> {
    (0..size).map(|i| (lsn as usize * 31 + i * 7) as u8).collect()
}

/// What must be in the journal.
#[derive(Debug, Default)]
struct Model {
    /// Every record appended, by LSN - 1 (acknowledged or not).
    records: Vec<Vec<u8>>,
    /// Everything up to here was acknowledged.
    acked: u64,
    groups: Vec<(u64, u64)>,
    snapshot: Option<u64>,
}

impl Model {
    fn check(&self, journal: &Journal) -> Result<(), TestCaseError> {
        let first = journal.first_lsn().get();
        let last = self.records.len() as u64;
        prop_assert_eq!(journal.durable_lsn().map_or(0, Lsn::get), last);
        prop_assert_eq!(journal.snapshot_lsn().map(Lsn::get), self.snapshot);
        match self.snapshot {
            Some(snapshot) => prop_assert!(first <= snapshot + 1),
            None => prop_assert_eq!(first, 1),
        }
        self.check_read(journal, first)
    }

    fn check_read(&self, journal: &Journal, from: u64) -> Result<(), TestCaseError> {
        let mut expected = from;
        for record in journal.read_from(Lsn::new(from).unwrap()).unwrap() {
            let (lsn, bytes) = record.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(lsn.get(), expected);
            prop_assert!(bytes == self.records[(lsn.get() - 1) as usize], "record {} differs", lsn);
            expected += 1;
        }
        prop_assert_eq!(expected - 1, self.records.len() as u64, "read stopped early");
        Ok(())
    }
}

fn open(disk: &SimDisk) -> Journal {
    Journal::open_with_storage(disk.storage(), options()).unwrap_or_else(|error| panic!("reopen failed: {error}")).0
}

fn run(ops: Vec<Op>, seed: u64) -> Result<(), TestCaseError> {
    let disk = SimDisk::new(seed);
    let mut journal = open(&disk);
    let mut model = Model::default();
    let mut pending: Vec<Ticket> = Vec::new();
    for op in ops {
        match op {
            Op::Append { sizes, wait } => {
                let first = model.records.len() as u64 + 1;
                let payloads: Vec<Vec<u8>> =
                    sizes.iter().enumerate().map(|(i, &size)| payload(first + i as u64, size)).collect();
                let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                let ticket = journal.append_group(&slices).unwrap();
                prop_assert_eq!(ticket.lsn().get(), first);
                let last = ticket.last_lsn().get();
                model.records.extend(payloads);
                model.groups.push((first, last));
                if wait {
                    prop_assert_eq!(ticket.wait().unwrap().get(), first);
                    model.acked = model.acked.max(last);
                } else {
                    pending.push(ticket);
                }
            }
            Op::Flush => {
                journal.flush().unwrap();
                model.acked = model.records.len() as u64;
                // Everything appended before the flush is durable now.
                for ticket in pending.drain(..) {
                    prop_assert!(ticket.try_outcome().is_some_and(|outcome| outcome.is_ok()));
                }
            }
            Op::Snapshot => {
                if let Some(lsn) = journal.durable_lsn() {
                    let mut writer = journal.begin_snapshot(lsn).unwrap();
                    std::io::Write::write_all(&mut writer, &snapshot_body_for(lsn.get())).unwrap();
                    journal.commit_snapshot(writer).unwrap();
                    model.snapshot = Some(lsn.get());
                    model.acked = model.acked.max(lsn.get());
                }
            }
            Op::RemoveSegments => {
                journal.remove_segments_before_snapshot().unwrap();
                let first = journal.first_lsn().get();
                if first > 1 {
                    prop_assert!(journal.read_from(Lsn::new(first - 1).unwrap()).is_err());
                }
            }
            Op::Read { at } => {
                journal.flush().unwrap();
                model.acked = model.records.len() as u64;
                let first = journal.first_lsn().get();
                let span = model.records.len() as u64 + 1 - first;
                model.check_read(&journal, first + span * u64::from(at) / 256)?;
            }
            Op::Reopen => {
                pending.clear();
                journal.close().unwrap();
                model.acked = model.records.len() as u64;
                journal = open(&disk);
                model.check(&journal)?;
            }
            Op::Crash(mode) => {
                pending.clear();
                disk.crash_now();
                drop(journal);
                disk.reboot(mode);
                journal = open(&disk);
                let last = journal.durable_lsn().map_or(0, Lsn::get);
                prop_assert!(last >= model.acked, "acknowledged {} lost, log ends at {}", model.acked, last);
                prop_assert!(last <= model.records.len() as u64, "the log has records never appended");
                for &(first, group_last) in &model.groups {
                    prop_assert!(last < first || last >= group_last, "group {first}..={group_last} split at {last}");
                }
                model.records.truncate(last as usize);
                model.groups.retain(|&(_, group_last)| group_last <= last);
                model.acked = last;
                model.check(&journal)?;
            }
        }
    }
    journal.close().unwrap();
    model.acked = model.records.len() as u64;
    let journal = open(&disk);
    model.check(&journal)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn journal_matches_the_model(ops in prop::collection::vec(op(), 1..40), seed in any::<u64>()) {
        run(ops, seed)?;
    }
}

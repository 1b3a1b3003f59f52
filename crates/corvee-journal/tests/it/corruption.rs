//! Damage at rest — bit flips, zeroed blocks and ranges, truncation,
//! deleted files — at random places of a journal, and what opening it says.
//! On a cleanly closed journal every damage must be detected and named
//! (file and offset). After a crash, zeroed sectors inside the final batch
//! look exactly like a torn write; that case alone may open as a torn tail,
//! and must then lose nothing but that batch.

use corvee_journal::format::{classify_sector, SectorKind, SegmentHeader, SECTOR_SIZE, SEGMENT_HEADER_SIZE};
use corvee_journal::sim::SimDisk;
use corvee_journal::{Journal, OpenError};

use crate::support::{check_recovered, run_workload, small_options, Progress};

/// A small deterministic generator for damage positions.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

#[derive(Debug, Clone)]
enum Damage {
    FlipBit { file: String, offset: u64, bit: u8 },
    ZeroBlock { file: String, offset: u64, len: u64 },
    ZeroRange { file: String, offset: u64, len: u64 },
    Truncate { file: String, len: u64 },
    Delete { file: String },
}

impl Damage {
    fn file(&self) -> &str {
        match self {
            Damage::FlipBit { file, .. }
            | Damage::ZeroBlock { file, .. }
            | Damage::ZeroRange { file, .. }
            | Damage::Truncate { file, .. }
            | Damage::Delete { file } => file,
        }
    }

    fn kind(&self) -> usize {
        match self {
            Damage::FlipBit { .. } => 0,
            Damage::ZeroBlock { .. } => 1,
            Damage::ZeroRange { .. } => 2,
            Damage::Truncate { .. } => 3,
            Damage::Delete { .. } => 4,
        }
    }

    /// The byte range the damage changed (deletion: the whole file).
    fn range(&self, len: u64) -> (u64, u64) {
        match self {
            Damage::FlipBit { offset, .. } => (*offset, offset + 1),
            Damage::ZeroBlock { offset, len, .. } | Damage::ZeroRange { offset, len, .. } => (*offset, offset + len),
            Damage::Truncate { len: new_len, .. } => (*new_len, len),
            Damage::Delete { .. } => (0, len),
        }
    }

    fn apply(&self, disk: &SimDisk) {
        match self {
            Damage::FlipBit { file, offset, bit } => disk.flip_bit(file, *offset, *bit),
            Damage::ZeroBlock { file, offset, len } | Damage::ZeroRange { file, offset, len } => {
                disk.zero_range(file, *offset, *len)
            }
            Damage::Truncate { file, len } => disk.truncate(file, *len),
            Damage::Delete { file } => disk.delete(file),
        }
    }
}

const KINDS: [&str; 5] = ["bit flips", "zeroed blocks", "zeroed ranges", "truncations", "deletions"];

/// Builds a journal with several segments, a snapshot, removed segments
/// and (if `close`) a clean close; returns the disk and what was acked.
fn build(close: bool) -> (SimDisk, Progress) {
    let disk = SimDisk::new(99);
    let (journal, _) = Journal::open_with_storage(disk.storage(), small_options()).unwrap();
    let mut progress = Progress::default();
    run_workload(&journal, 140, &mut progress).unwrap();
    if close {
        journal.close().unwrap();
    } else {
        disk.crash_now();
        drop(journal);
        disk.reboot(corvee_journal::sim::CrashMode::DropUnsynced);
    }
    let segments = disk.file_names().into_iter().filter(|name| name.ends_with(".log")).count();
    assert!(segments >= 4, "the workload should leave several segments, left {segments}");
    assert!(progress.snapshot.is_some());
    (disk, progress)
}

/// Classifies data sector `index` of a segment file's bytes.
fn sector_of(bytes: &[u8], index: u64) -> SectorKind {
    let header = SegmentHeader::decode(&bytes[..SEGMENT_HEADER_SIZE as usize]).unwrap();
    let start = (SEGMENT_HEADER_SIZE + index * SECTOR_SIZE as u64) as usize;
    classify_sector(&bytes[start..start + SECTOR_SIZE], header.salt, index)
}

/// The LSN of the batch owning the sector at byte `offset` of a segment.
fn batch_lsn_at(disk: &SimDisk, file: &str, offset: u64) -> Option<u64> {
    let bytes = disk.read_file(file)?;
    let index = offset.checked_sub(SEGMENT_HEADER_SIZE)? / SECTOR_SIZE as u64;
    match sector_of(&bytes, index) {
        SectorKind::Valid(stamp) if !stamp.is_close_marker() => Some(stamp.batch_lsn),
        _ => None,
    }
}

/// The file and sector range of the final batch of the log.
fn final_batch(disk: &SimDisk) -> (String, u64, u64) {
    let mut segments: Vec<String> = disk.file_names().into_iter().filter(|name| name.ends_with(".log")).collect();
    segments.sort();
    let mut found = None;
    'segments: for name in segments.iter().rev() {
        let bytes = disk.read_file(name).unwrap();
        let header = SegmentHeader::decode(&bytes[..SEGMENT_HEADER_SIZE as usize]).unwrap();
        for index in (0..header.sector_count()).rev() {
            if let SectorKind::Valid(stamp) = sector_of(&bytes, index) {
                if !stamp.is_close_marker() {
                    found = Some((name.clone(), bytes, index, stamp.batch_lsn));
                    break 'segments;
                }
            }
        }
    }
    let (last, bytes, last_sector, batch_lsn) = found.expect("some segment holds a batch");
    let sector = |index: u64| sector_of(&bytes, index);
    let mut first_sector = last_sector;
    while first_sector > 0
        && matches!(sector(first_sector - 1), SectorKind::Valid(stamp) if stamp.batch_lsn == batch_lsn)
    {
        first_sector -= 1;
    }
    let offset = |index: u64| SEGMENT_HEADER_SIZE + index * SECTOR_SIZE as u64;
    (last, offset(first_sector), offset(last_sector + 1))
}

fn random_damage(disk: &SimDisk, random: &mut Random) -> Damage {
    let files = disk.file_names();
    let file = files[random.below(files.len() as u64) as usize].clone();
    let len = disk.file_len(&file).unwrap();
    match random.below(10) {
        0..=3 => Damage::FlipBit { file, offset: random.below(len), bit: random.below(8) as u8 },
        4..=5 => {
            let block = if random.below(2) == 0 { 512 } else { 4096 };
            Damage::ZeroBlock { file, offset: random.below(len / block) * block, len: block }
        }
        6..=7 => Damage::ZeroRange { file, offset: random.below(len), len: 1 + random.below(2000) },
        8 => Damage::Truncate { file, len: random.below(len) },
        _ => Damage::Delete { file },
    }
}

/// Applies many random damages to copies of `base` and checks each open.
/// Returns (tried per kind, detected, accepted as torn tail).
fn damage_many(base: &SimDisk, progress: &Progress, trials: u32, crashed: bool) -> ([u32; 5], u32, u32) {
    let last_segment = base.file_names().into_iter().filter(|name| name.ends_with(".log")).max().unwrap();
    let (final_file, final_start, _) = final_batch(base);
    // The last non-zero byte of the log (the close marker, if it shares the
    // final batch's file): zeroes reaching it leave nothing after them.
    let data_end = if final_file == last_segment {
        let bytes = base.read_file(&final_file).unwrap();
        bytes.iter().rposition(|&byte| byte != 0).unwrap() as u64 + 1
    } else {
        u64::MAX // the marker is in a later file: no single run covers both
    };
    let mut random = Random(0x5eed_1234_abcd_ef01);
    let mut tried = [0u32; 5];
    let (mut detected, mut torn, mut markers_erased) = (0, 0, 0);
    let mut attempts = 0;
    while tried.iter().sum::<u32>() < trials {
        attempts += 1;
        assert!(attempts < trials * 20, "could not generate enough effective damage");
        let damage = random_damage(base, &mut random);
        // Deleting the newest segment leaves no trace anywhere (documented);
        // it is not a damage this test can expect to be found.
        if matches!(&damage, Damage::Delete { file } if *file == last_segment) {
            continue;
        }
        let disk = base.fork();
        let before = disk.read_file(damage.file()).unwrap();
        damage.apply(&disk);
        if disk.read_file(damage.file()).as_ref() == Some(&before) {
            continue; // zeroing bytes that were already zero changes nothing
        }
        tried[damage.kind()] += 1;
        // Judge by the bytes that actually changed: zeroing padding that
        // was already zero is no damage at all.
        let (start, end) = match (&damage, disk.read_file(damage.file())) {
            (Damage::FlipBit { .. } | Damage::ZeroBlock { .. } | Damage::ZeroRange { .. }, Some(after)) => {
                let first = before.iter().zip(&after).position(|(a, b)| a != b).unwrap() as u64;
                let last = before.iter().zip(&after).rposition(|(a, b)| a != b).unwrap() as u64;
                (first, last + 1)
            }
            _ => damage.range(before.len() as u64),
        };
        let path = format!("sim:/{}", damage.file());
        match Journal::open_with_storage(disk.storage(), small_options()) {
            Err(OpenError::Corrupt(corruption)) => {
                detected += 1;
                let named = corruption.path.to_string_lossy().into_owned();
                if let Damage::Delete { file } = &damage {
                    assert!(
                        corruption.reason.contains(file.as_str()) || named == path || file.contains("snapshot"),
                        "{damage:?}: {corruption}"
                    );
                } else {
                    assert_eq!(named, path, "{damage:?} reported in another file: {corruption}");
                    assert!(corruption.offset <= end, "{damage:?} reported after the damage: {corruption}");
                }
            }
            Err(other) => panic!("{damage:?}: expected a corruption error, got {other}"),
            Ok((journal, report))
                if !crashed && !report.clean_shutdown && report.last_lsn.is_some_and(|l| l.get() >= progress.acked) =>
            {
                // Only the close marker was zeroed: nothing is lost, the
                // journal merely looks as if it had not been closed cleanly.
                assert!(matches!(damage, Damage::ZeroBlock { .. } | Damage::ZeroRange { .. }), "{damage:?}: {report}");
                check_recovered(&journal, progress);
                markers_erased += 1;
            }
            Ok((journal, report)) => {
                // Zeroes that reach the last non-zero byte of the log (the
                // close marker, on a clean journal) leave one partial batch
                // followed by nothing: exactly what a write that never
                // reached the disk leaves. After a crash, zeroes inside the
                // final batch look like a torn write of it too.
                let zeroing = matches!(damage, Damage::ZeroBlock { .. } | Damage::ZeroRange { .. });
                let reaches_end = end >= data_end;
                let inside_final = crashed && start >= final_start;
                assert!(
                    zeroing && damage.file() == final_file && (reaches_end || inside_final),
                    "{damage:?} went undetected: opened with {report} (final batch at {final_file} from {final_start}, data ends at {data_end})"
                );
                // Then exactly the batches the damage touched are gone.
                let first_touched = (start.max(SEGMENT_HEADER_SIZE)..end)
                    .step_by(SECTOR_SIZE)
                    .chain([start])
                    .filter_map(|offset| batch_lsn_at(base, damage.file(), offset))
                    .min()
                    .expect("the damage touched a batch");
                let last = report.last_lsn.map_or(0, |lsn| lsn.get());
                assert_eq!(last + 1, first_touched, "{damage:?}: lost more than the batches it touched ({report})");
                assert!(report.torn_tail.is_some() || end >= data_end, "{damage:?}: {report}");
                let mut expected = progress.clone();
                expected.acked = last;
                check_recovered(&journal, &expected);
                torn += 1;
            }
        }
    }
    if !crashed {
        println!("clean journal: zeroes that erased only the close marker (nothing lost): {markers_erased}");
    }
    (tried, detected, torn)
}

fn summary(tried: [u32; 5]) -> String {
    KINDS.iter().zip(tried).map(|(kind, n)| format!("{n} {kind}")).collect::<Vec<_>>().join(", ")
}

#[test]
fn every_damage_to_a_cleanly_closed_journal_is_detected_and_named() {
    let (disk, progress) = build(true);
    let (tried, detected, torn) = damage_many(&disk, &progress, 3000, false);
    println!(
        "clean journal: damages tried: {} ({}); detected: {detected}; zero runs through the close marker: {torn}",
        tried.iter().sum::<u32>(),
        summary(tried)
    );
    assert!(tried.iter().all(|&n| n > 0), "every kind of damage must be tried: {tried:?}");
}

#[test]
fn after_a_crash_only_zeroed_sectors_of_the_final_batch_pass_as_a_torn_tail() {
    let (disk, progress) = build(false);
    let (tried, detected, torn) = damage_many(&disk, &progress, 3000, true);
    println!(
        "crashed journal: damages tried: {} ({}); detected: {detected}; torn-tail look-alikes: {torn}",
        tried.iter().sum::<u32>(),
        summary(tried)
    );
    assert!(tried.iter().all(|&n| n > 0), "every kind of damage must be tried: {tried:?}");
}

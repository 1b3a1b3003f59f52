//! In the spirit of urbit's event-log test: multi-megabyte records between
//! random small ones, reopened several times, read back equal — including
//! one larger than a segment, which gets a segment of its own.

use corvee_journal::{Journal, JournalOptions, Lsn};

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn multi_megabyte_records_among_small_ones_survive_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let options = || JournalOptions { segment_bytes: 4 << 20, ..JournalOptions::default() };
    let mut expected: Vec<Vec<u8>> = Vec::new();
    // Sizes: small ones around sector boundaries, a 3 MiB one that fits a
    // segment, and a 9 MiB one that does not.
    let rounds: [&[usize]; 4] = [&[10, 3 << 20, 500], &[1, 496, 9 << 20, 7], &[0, 100_000, 3 << 20], &[42]];
    for (round, sizes) in rounds.iter().enumerate() {
        let (journal, report) = Journal::open(dir.path(), options()).unwrap();
        assert_eq!(report.records, expected.len() as u64, "round {round}: {report}");
        assert!(report.clean_shutdown || round == 0);
        let all: Vec<Vec<u8>> = journal.read_from(Lsn::FIRST).unwrap().map(|record| record.unwrap().1).collect();
        assert!(all == expected, "round {round}: records differ after reopen");
        for (i, &size) in sizes.iter().enumerate() {
            let payload = bytes((round * 100 + i) as u64, size);
            let lsn = journal.append(&payload).unwrap().wait().unwrap();
            assert_eq!(lsn.get(), expected.len() as u64 + 1);
            expected.push(payload);
        }
        journal.close().unwrap();
    }
    let (journal, _) = Journal::open(dir.path(), options()).unwrap();
    let all: Vec<Vec<u8>> = journal.read_from(Lsn::FIRST).unwrap().map(|record| record.unwrap().1).collect();
    assert_eq!(all.len(), expected.len());
    assert!(all == expected);
    // The 9 MiB record needed a segment larger than the configured 4 MiB.
    let largest =
        std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().metadata().unwrap().len()).max().unwrap();
    assert!(largest > 9 << 20, "largest file is {largest} bytes");
}

#[test]
fn a_record_over_the_limit_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions { max_record_bytes: 1 << 20, ..JournalOptions::default() };
    let (journal, _) = Journal::open(dir.path(), options).unwrap();
    let error = journal.append(&vec![0u8; (1 << 20) + 1]).unwrap_err();
    assert!(error.to_string().contains("exceeds the journal's maximum of 1048576 bytes"), "{error}");
    assert_eq!(journal.append(b"fine").unwrap().wait().unwrap(), Lsn::FIRST);
}

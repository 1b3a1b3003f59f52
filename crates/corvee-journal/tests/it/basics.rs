//! Append, read back, reopen, snapshot and lock on a real directory.

use corvee_journal::{Journal, JournalOptions, Lsn, OpenError};

fn small_segments() -> JournalOptions {
    JournalOptions { segment_bytes: 64 * 1024, ..JournalOptions::default() }
}

fn read_all(journal: &Journal) -> Vec<(u64, Vec<u8>)> {
    journal
        .read_from(journal.first_lsn())
        .unwrap()
        .map(|record| record.map(|(lsn, payload)| (lsn.get(), payload)).unwrap())
        .collect()
}

#[test]
fn appended_records_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let expected: Vec<(u64, Vec<u8>)> =
        (1..=500u64).map(|i| (i, format!("record {i}").repeat(i as usize % 7).into_bytes())).collect();
    {
        let (journal, report) = Journal::open(dir.path(), small_segments()).unwrap();
        assert!(report.created);
        for (lsn, payload) in &expected {
            // Waiting on each makes one batch (at least one sector) per
            // record, so the small segments roll over several times.
            let ticket = journal.append(payload).unwrap();
            assert_eq!(ticket.wait().unwrap().get(), *lsn);
        }
        assert_eq!(journal.flush().unwrap(), Lsn::new(500));
        assert_eq!(read_all(&journal), expected);
        journal.close().unwrap();
    }
    let (journal, report) = Journal::open(dir.path(), small_segments()).unwrap();
    assert!(!report.created);
    assert_eq!(report.records, 500);
    assert!(report.segments.len() > 1, "small segments must have rolled: {report}");
    assert_eq!(report.torn_tail, None);
    assert_eq!(read_all(&journal), expected);
    assert_eq!(journal.append(b"next").unwrap().wait().unwrap().get(), 501);
}

#[test]
fn snapshot_lets_old_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(dir.path(), small_segments()).unwrap();
    for i in 0..2000u32 {
        let mut payload = i.to_le_bytes().to_vec();
        payload.resize(100, 0xab);
        journal.append(&payload).unwrap();
    }
    journal.flush().unwrap();
    let mut writer = journal.begin_snapshot(Lsn::new(1500).unwrap()).unwrap();
    std::io::Write::write_all(&mut writer, b"state at 1500").unwrap();
    journal.commit_snapshot(writer).unwrap();
    let removed = journal.remove_segments_before_snapshot().unwrap();
    assert!(!removed.is_empty());
    assert!(journal.first_lsn().get() <= 1501);
    assert!(journal.read_from(Lsn::FIRST).is_err());
    drop(journal);
    let (journal, report) = Journal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(report.snapshot_lsn, Lsn::new(1500));
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut journal.snapshot().unwrap().unwrap(), &mut body).unwrap();
    assert_eq!(body, b"state at 1500");
    let tail: Vec<_> = journal.read_from(Lsn::new(1501).unwrap()).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(tail.len(), 500);
    assert_eq!(tail[0].1[..4], 1500u32.to_le_bytes());
}

#[test]
fn a_second_writer_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (_journal, _) = Journal::open(dir.path(), small_segments()).unwrap();
    let error = Journal::open(dir.path(), small_segments()).unwrap_err();
    assert!(matches!(error, OpenError::Locked(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
}

#[test]
fn a_lingering_writer_waits_for_more_records_but_not_past_a_full_batch() {
    let dir = tempfile::tempdir().unwrap();
    let record = [7u8; 100];
    // Room for exactly four records; a linger far longer than the test.
    let options = JournalOptions {
        linger: std::time::Duration::from_secs(120),
        max_batch_bytes: 4 * (16 + record.len()),
        ..JournalOptions::default()
    };
    let (journal, _) = Journal::open(dir.path(), options).unwrap();
    let journal = std::sync::Arc::new(journal);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for _ in 0..4 {
        let (journal, done_tx) = (journal.clone(), done_tx.clone());
        std::thread::spawn(move || done_tx.send(journal.append(&record).unwrap().wait().unwrap()).unwrap());
    }
    let mut lsns: Vec<u64> = (0..4)
        .map(|_| {
            done_rx.recv_timeout(std::time::Duration::from_secs(60)).expect("a full batch is written at once").get()
        })
        .collect();
    lsns.sort_unstable();
    assert_eq!(lsns, [1, 2, 3, 4]);
    // The first record waited for the other three: one write, one fdatasync.
    assert_eq!(journal.stats().batches_written, 1);
}

//! A real `kill -9`: a child process (this test binary, re-executed) appends
//! from several threads and records every acknowledged LSN in a side file;
//! the parent kills it with SIGKILL at a random moment, reopens the journal
//! and checks that every acknowledged record is there, byte for byte, and
//! that every record present is one a child wrote. Fifty rounds on one
//! directory, so recovery of recovery is exercised too.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use corvee_journal::{Journal, JournalOptions, Lsn};

const CHILD_DIR: &str = "CORVEE_JOURNAL_KILL9_DIR";
const CHILD_ROUND: &str = "CORVEE_JOURNAL_KILL9_ROUND";
const ROUNDS: u64 = 50;
const THREADS: u64 = 6;

fn options() -> JournalOptions {
    // Small segments so kills land during rolls and zero-filling too.
    JournalOptions { segment_bytes: 256 * 1024, ..JournalOptions::default() }
}

/// A payload that names its writer and can be verified on its own.
fn payload(round: u64, thread: u64, sequence: u64) -> Vec<u8> {
    let header = format!("{round}/{thread}/{sequence}:");
    let len = ((round * 7 + thread * 13 + sequence * 31) % 700) as usize;
    let mut bytes = header.into_bytes();
    bytes.extend((0..len).map(|i| (i as u64 ^ sequence ^ (thread << 3) ^ (round << 5)) as u8));
    bytes
}

fn parse(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    let colon = bytes.iter().position(|&b| b == b':')?;
    let header = std::str::from_utf8(&bytes[..colon]).ok()?;
    let mut parts = header.split('/').map(|part| part.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// The child: appends until killed. Not a test on its own.
#[test]
#[ignore = "the child half of kill9::acknowledged_appends_survive_sigkill; run by it"]
fn kill9_child() {
    let dir = std::env::var(CHILD_DIR).expect("run by the parent test");
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let dir = Path::new(&dir);
    let (journal, _) = Journal::open(dir.join("journal"), options()).unwrap();
    let acks =
        std::sync::Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("acks")).unwrap());
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (journal, acks) = (&journal, &acks);
            scope.spawn(move || {
                for sequence in 0.. {
                    let lsn = journal.append(&payload(round, thread, sequence)).unwrap().wait().unwrap();
                    // One write(2) per line: whole lines reach the file even
                    // if SIGKILL arrives between two of them.
                    let line = format!("{} {round} {thread} {sequence}\n", lsn.get());
                    acks.lock().unwrap().write_all(line.as_bytes()).unwrap();
                    println!("ack");
                }
            });
        }
    });
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut random = 0x1234_5678_9abc_def1u64;
    let mut total_acked = 0;
    let mut torn_tails = 0;
    for round in 0..ROUNDS {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let kill_after = 1 + random % 400;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["kill9::kill9_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        for line in stdout.lines() {
            if line.unwrap() == "ack" {
                seen += 1;
                if seen == kill_after {
                    break;
                }
            }
        }
        assert_eq!(seen, kill_after, "round {round}: the child stopped acknowledging early");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let (journal, report) = Journal::open(dir.path().join("journal"), options()).unwrap();
        torn_tails += usize::from(report.torn_tail.is_some());
        let mut present = std::collections::HashMap::new();
        for record in journal.read_from(Lsn::FIRST).unwrap() {
            let (lsn, bytes) = record.unwrap();
            let (r, t, s) = parse(&bytes).unwrap_or_else(|| panic!("record {lsn} was never written by a child"));
            assert!(bytes == payload(r, t, s), "record {lsn} is damaged");
            present.insert(lsn.get(), (r, t, s));
        }
        let acks = std::fs::read_to_string(dir.path().join("acks")).unwrap();
        total_acked = 0;
        for line in acks.lines() {
            let numbers: Vec<u64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
            let found = present.get(&numbers[0]);
            assert_eq!(found, Some(&(numbers[1], numbers[2], numbers[3])), "round {round}: acknowledged {line} lost");
            total_acked += 1;
        }
        journal.close().unwrap();
    }
    println!(
        "kill -9 rounds: {ROUNDS}; acknowledged appends checked: {total_acked}; torn tails recovered: {torn_tails}"
    );
}

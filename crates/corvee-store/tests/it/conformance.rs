//! The conformance suite, run against the local store.

use std::sync::Arc;

use corvee_store::conformance::{Harness, START};
use corvee_store::{LocalStore, LocalStoreOptions, ManualClock};

pub struct LocalHarness {
    _dir: tempfile::TempDir,
    store: LocalStore,
    clock: ManualClock,
}

impl Harness for LocalHarness {
    type Store = LocalStore;

    fn store(&self) -> &LocalStore {
        &self.store
    }

    fn clock(&self) -> &ManualClock {
        &self.clock
    }
}

pub async fn make() -> LocalHarness {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let options = LocalStoreOptions { maintenance: None, ..LocalStoreOptions::default() };
    let (store, _) = LocalStore::open_with_clock(dir.path(), options, Arc::new(clock.clone())).unwrap();
    LocalHarness { _dir: dir, store, clock }
}

corvee_store::conformance_tests!(make);

//! A simulated disk for crash and fault tests: a volatile page cache in
//! front of a durable medium, with crashes at any mutating call, torn
//! writes at sector or page granularity, injected I/O errors (EIO, ENOSPC,
//! short writes), a capacity limit, Linux's "failed fsync marks pages
//! clean" behaviour, and damage at rest (bit flips, zeroed blocks,
//! truncation).
//!
//! The model:
//! - Each file has `cached` bytes (what reads see) and `durable` bytes (what
//!   survives a crash). `write_at` changes `cached` and marks the touched
//!   512-byte sectors dirty; `sync_data` copies dirty sectors to `durable`.
//! - Directory changes (create, rename, remove) apply to the visible
//!   namespace at once and are queued; `sync_dir` makes the queue durable.
//! - [`SimDisk::reboot`] forgets the cache: unsynced data is dropped, kept,
//!   or torn (each dirty sector or 4-KiB page independently kept or
//!   dropped), and a random prefix of the unsynced directory changes
//!   survives (journaling file systems apply them in order).
//!
//! Only built with the `fault-injection` feature.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{LockError, Storage, StorageFile};

const SECTOR: u64 = 512;

/// Kinds of calls a fault can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `write_at`.
    Write,
    /// `sync_data`.
    SyncData,
    /// `create_new`.
    Create,
    /// `rename`.
    Rename,
    /// `remove`.
    Remove,
    /// `sync_dir`.
    SyncDir,
    /// `read_at`.
    Read,
}

impl Call {
    /// Whether the call changes what is (or may become) on disk.
    pub fn is_mutating(self) -> bool {
        !matches!(self, Call::Read)
    }
}

/// What an injected fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Fails with EIO. A failed `sync_data` also marks the dirty sectors
    /// clean without making them durable, as Linux does.
    Eio,
    /// Fails with ENOSPC without writing anything.
    NoSpace,
    /// Writes only the first half (at least one byte) and reports that.
    ShortWrite,
}

/// An injected error: at the `nth` call (0-based) of `call`, and, if
/// `persistent`, at every later one too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Which calls.
    pub call: Call,
    /// The index among calls of that kind at which the fault starts.
    pub nth: u64,
    /// What happens.
    pub kind: FaultKind,
    /// Whether it keeps happening after the first time.
    pub persistent: bool,
}

/// What happens to unsynced data at a reboot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Everything not synced is lost.
    DropUnsynced,
    /// Each dirty 512-byte sector independently survives or not.
    TornSectors,
    /// Each dirty 4-KiB page independently survives or not.
    TornPages,
    /// Everything written survives (the OS flushed it before the crash).
    KeepAll,
}

#[derive(Clone, Debug, Default)]
struct Inode {
    cached: Vec<u8>,
    durable: Vec<u8>,
    dirty: BTreeSet<u64>,
}

#[derive(Clone, Debug)]
enum DirChange {
    Link(String, u64),
    Unlink(String),
}

#[derive(Clone, Debug, Default)]
struct DiskState {
    inodes: HashMap<u64, Inode>,
    visible: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    unsynced: Vec<DirChange>,
    next_inode: u64,
    /// Bumped at every reboot; handles from before fail.
    generation: u64,
    locked: bool,
    crashed: bool,
    crash_at: Option<u64>,
    mutating_calls: u64,
    calls: HashMap<Call, u64>,
    faults: Vec<Fault>,
    capacity: Option<u64>,
    random: u64,
}

impl DiskState {
    /// Counts a call and decides whether it fails.
    fn enter(&mut self, call: Call) -> Result<Option<FaultKind>, io::Error> {
        if self.crashed {
            return Err(crash_error());
        }
        if call.is_mutating() {
            if self.crash_at == Some(self.mutating_calls) {
                self.crashed = true;
                return Err(crash_error());
            }
            self.mutating_calls += 1;
        }
        let count = self.calls.entry(call).or_insert(0);
        let index = *count;
        *count += 1;
        let fault = self
            .faults
            .iter()
            .find(|fault| fault.call == call && (index == fault.nth || (fault.persistent && index > fault.nth)))
            .map(|fault| fault.kind);
        Ok(fault)
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|inode| inode.cached.len().max(inode.durable.len()) as u64).sum()
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic per seed, good enough for choosing
        // which sectors a crash keeps.
        let mut x = self.random.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn crash_error() -> io::Error {
    io::Error::other("simulated crash: the disk is gone until reboot")
}

fn injected(kind: FaultKind) -> io::Error {
    match kind {
        FaultKind::Eio => io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()),
        FaultKind::NoSpace => io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
        FaultKind::ShortWrite => unreachable!("short writes succeed partially"),
    }
}

/// A simulated disk holding one directory. Cheap to clone; clones share it.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimDisk").field("files", &state.visible.len()).field("generation", &state.generation).finish()
    }
}

impl SimDisk {
    /// An empty disk; `seed` drives every random choice it makes.
    pub fn new(seed: u64) -> SimDisk {
        let disk = SimDisk::default();
        disk.lock().random = seed | 1;
        disk
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An independent copy of this disk as it is now (faults included), for
    /// trying many kinds of damage on the same starting state.
    pub fn fork(&self) -> SimDisk {
        let state = self.lock().clone();
        SimDisk { state: Arc::new(Mutex::new(state)) }
    }

    /// A storage handle for opening a journal on this disk.
    pub fn storage(&self) -> Arc<dyn Storage> {
        Arc::new(SimStorage { disk: self.clone(), holds_lock: Mutex::new(false) })
    }

    /// Makes the `n`th mutating call (0-based, counted from now) and every
    /// later one fail as if the machine lost power.
    pub fn crash_after(&self, n: u64) {
        let mut state = self.lock();
        state.crash_at = Some(state.mutating_calls + n);
    }

    /// Crashes now: every later call fails until [`SimDisk::reboot`].
    pub fn crash_now(&self) {
        self.lock().crashed = true;
    }

    /// Whether the disk has crashed and awaits a reboot.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Mutating calls made so far (writes, syncs, creates, renames, removes).
    pub fn mutating_calls(&self) -> u64 {
        self.lock().mutating_calls
    }

    /// Calls of one kind made so far.
    pub fn calls(&self, call: Call) -> u64 {
        self.lock().calls.get(&call).copied().unwrap_or(0)
    }

    /// Adds an injected error.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every injected error and crash point.
    pub fn clear_faults(&self) {
        let mut state = self.lock();
        state.faults.clear();
        state.crash_at = None;
    }

    /// Limits the bytes all files may occupy; writes that would grow past
    /// it fail with ENOSPC. `None` removes the limit.
    pub fn set_capacity(&self, capacity: Option<u64>) {
        self.lock().capacity = capacity;
    }

    /// Bytes all files occupy.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// Simulates power loss and restart: the page cache is lost according to
    /// `mode`, a random prefix of unsynced directory changes survives (all
    /// of them with `KeepAll`, none with `DropUnsynced`), the lock is
    /// released, and handles from before stop working. Faults stay.
    pub fn reboot(&self, mode: CrashMode) {
        let mut state = self.lock();
        let state = &mut *state;
        let unsynced = std::mem::take(&mut state.unsynced);
        let keep_changes = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::KeepAll => unsynced.len(),
            CrashMode::TornSectors | CrashMode::TornPages => {
                (state.next_random() % (unsynced.len() as u64 + 1)) as usize
            }
        };
        for change in &unsynced[..keep_changes] {
            match change {
                DirChange::Link(name, inode) => {
                    state.durable.insert(name.clone(), *inode);
                }
                DirChange::Unlink(name) => {
                    state.durable.remove(name);
                }
            }
        }
        let mut inode_ids: Vec<u64> = state.inodes.keys().copied().collect();
        inode_ids.sort_unstable();
        for id in inode_ids {
            let dirty: Vec<u64> = state.inodes[&id].dirty.iter().copied().collect();
            let mut page_choice: Option<(u64, bool)> = None;
            for sector in dirty {
                let keep = match mode {
                    CrashMode::DropUnsynced => false,
                    CrashMode::KeepAll => true,
                    CrashMode::TornSectors => state.next_random().is_multiple_of(2),
                    CrashMode::TornPages => {
                        let page = sector / 8;
                        match page_choice {
                            Some((chosen, keep)) if chosen == page => keep,
                            _ => {
                                let keep = state.next_random().is_multiple_of(2);
                                page_choice = Some((page, keep));
                                keep
                            }
                        }
                    }
                };
                if keep {
                    let inode = state.inodes.get_mut(&id).expect("inode");
                    persist_sector(inode, sector);
                }
            }
            let inode = state.inodes.get_mut(&id).expect("inode");
            if mode == CrashMode::KeepAll {
                inode.durable = inode.cached.clone();
            }
            inode.dirty.clear();
            inode.cached = inode.durable.clone();
        }
        state.visible = state.durable.clone();
        let live: BTreeSet<u64> = state.visible.values().copied().collect();
        state.inodes.retain(|id, _| live.contains(id));
        state.generation += 1;
        state.locked = false;
        state.crashed = false;
        state.crash_at = None;
    }

    /// The durable (and visible) names, sorted.
    pub fn file_names(&self) -> Vec<String> {
        self.lock().visible.keys().cloned().collect()
    }

    /// The visible contents of a file.
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.lock();
        let inode = state.visible.get(name)?;
        Some(state.inodes[inode].cached.clone())
    }

    /// Damage at rest: changes a file's bytes both in the cache and on the
    /// medium, as bit rot found after a reboot would.
    pub fn corrupt(&self, name: &str, damage: impl FnOnce(&mut Vec<u8>)) {
        let mut state = self.lock();
        let id = *state.visible.get(name).unwrap_or_else(|| panic!("no file {name} to corrupt"));
        let inode = state.inodes.get_mut(&id).expect("inode");
        damage(&mut inode.cached);
        inode.durable = inode.cached.clone();
        inode.dirty.clear();
    }

    /// Flips one bit of a file at rest.
    pub fn flip_bit(&self, name: &str, offset: u64, bit: u8) {
        self.corrupt(name, |bytes| bytes[offset as usize] ^= 1 << (bit % 8));
    }

    /// Zeroes a range of a file at rest.
    pub fn zero_range(&self, name: &str, offset: u64, len: u64) {
        self.corrupt(name, |bytes| {
            let end = ((offset + len) as usize).min(bytes.len());
            bytes[offset as usize..end].fill(0);
        });
    }

    /// Cuts a file short at rest.
    pub fn truncate(&self, name: &str, len: u64) {
        self.corrupt(name, |bytes| bytes.truncate(len as usize));
    }

    /// Deletes a file at rest, as an operator's mistake would.
    pub fn delete(&self, name: &str) {
        let mut state = self.lock();
        state.visible.remove(name);
        state.durable.remove(name);
    }

    /// The length of a file.
    pub fn file_len(&self, name: &str) -> Option<u64> {
        self.read_file(name).map(|bytes| bytes.len() as u64)
    }
}

fn persist_sector(inode: &mut Inode, sector: u64) {
    let start = (sector * SECTOR) as usize;
    let end = (start + SECTOR as usize).min(inode.cached.len());
    if start >= inode.cached.len() {
        return;
    }
    if inode.durable.len() < end {
        inode.durable.resize(end, 0);
    }
    inode.durable[start..end].copy_from_slice(&inode.cached[start..end]);
}

#[derive(Debug)]
struct SimStorage {
    disk: SimDisk,
    holds_lock: Mutex<bool>,
}

impl Drop for SimStorage {
    fn drop(&mut self) {
        self.unlock();
    }
}

impl SimStorage {
    fn open_handle(&self, state: &DiskState, inode: u64) -> Box<dyn StorageFile> {
        Box::new(SimFile { disk: self.disk.clone(), inode, generation: state.generation })
    }
}

impl Storage for SimStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut state = self.disk.lock();
        state.enter(Call::Read)?;
        Ok(state.visible.keys().cloned().collect())
    }

    fn create_new(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.disk.lock();
        if let Some(kind) = state.enter(Call::Create)? {
            return Err(injected(if kind == FaultKind::ShortWrite { FaultKind::Eio } else { kind }));
        }
        if state.visible.contains_key(name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let id = state.next_inode;
        state.next_inode += 1;
        state.inodes.insert(id, Inode::default());
        state.visible.insert(name.to_string(), id);
        state.unsynced.push(DirChange::Link(name.to_string(), id));
        Ok(self.open_handle(&state, id))
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.disk.lock();
        state.enter(Call::Read)?;
        let id = *state.visible.get(name).ok_or(io::ErrorKind::NotFound)?;
        Ok(self.open_handle(&state, id))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.disk.lock();
        if let Some(kind) = state.enter(Call::Rename)? {
            return Err(injected(if kind == FaultKind::ShortWrite { FaultKind::Eio } else { kind }));
        }
        let id = state.visible.remove(from).ok_or(io::ErrorKind::NotFound)?;
        state.visible.insert(to.to_string(), id);
        state.unsynced.push(DirChange::Link(to.to_string(), id));
        state.unsynced.push(DirChange::Unlink(from.to_string()));
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.disk.lock();
        if let Some(kind) = state.enter(Call::Remove)? {
            return Err(injected(if kind == FaultKind::ShortWrite { FaultKind::Eio } else { kind }));
        }
        state.visible.remove(name).ok_or(io::ErrorKind::NotFound)?;
        state.unsynced.push(DirChange::Unlink(name.to_string()));
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut state = self.disk.lock();
        if let Some(kind) = state.enter(Call::SyncDir)? {
            // A failed directory fsync leaves it unknown which changes
            // reached the disk; keep them queued (a reboot may keep some).
            return Err(injected(if kind == FaultKind::ShortWrite { FaultKind::Eio } else { kind }));
        }
        let changes = std::mem::take(&mut state.unsynced);
        for change in changes {
            match change {
                DirChange::Link(name, inode) => {
                    state.durable.insert(name, inode);
                }
                DirChange::Unlink(name) => {
                    state.durable.remove(&name);
                }
            }
        }
        Ok(())
    }

    fn try_lock(&self) -> Result<(), LockError> {
        let mut holds = self.holds_lock.lock().unwrap_or_else(|p| p.into_inner());
        if *holds {
            return Ok(());
        }
        let mut state = self.disk.lock();
        if state.locked {
            return Err(LockError::Held {
                path: self.path_of(crate::storage::LOCK_FILE_NAME),
                holder: Some("another simulated writer".into()),
            });
        }
        state.locked = true;
        *holds = true;
        Ok(())
    }

    fn unlock(&self) {
        let mut holds = self.holds_lock.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::take(&mut *holds) {
            self.disk.lock().locked = false;
        }
    }

    fn path_of(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("sim:/{name}"))
    }
}

#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    inode: u64,
    generation: u64,
}

impl SimFile {
    fn with_inode<T>(
        &self,
        call: Call,
        f: impl FnOnce(&mut DiskState, Option<FaultKind>) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = self.disk.lock();
        if state.generation != self.generation {
            return Err(io::Error::other("stale simulated file handle from before a reboot"));
        }
        let fault = state.enter(call)?;
        if !state.inodes.contains_key(&self.inode) {
            return Err(io::Error::other("simulated file handle to a deleted inode"));
        }
        f(&mut state, fault)
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with_inode(Call::Read, |state, fault| {
            if let Some(kind) = fault {
                return Err(injected(if kind == FaultKind::ShortWrite { FaultKind::Eio } else { kind }));
            }
            let cached = &state.inodes[&self.inode].cached;
            if offset >= cached.len() as u64 {
                return Ok(0);
            }
            let start = offset as usize;
            let len = buf.len().min(cached.len() - start);
            buf[..len].copy_from_slice(&cached[start..start + len]);
            Ok(len)
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.with_inode(Call::Write, |state, fault| {
            let len = match fault {
                Some(FaultKind::ShortWrite) => buf.len().div_ceil(2).max(1).min(buf.len()),
                Some(kind) => return Err(injected(kind)),
                None => buf.len(),
            };
            let end = offset + len as u64;
            let current = state.inodes[&self.inode].cached.len() as u64;
            if end > current {
                if let Some(capacity) = state.capacity {
                    if state.used_bytes() + (end - current) > capacity {
                        return Err(injected(FaultKind::NoSpace));
                    }
                }
            }
            let inode = state.inodes.get_mut(&self.inode).expect("checked");
            if inode.cached.len() < end as usize {
                inode.cached.resize(end as usize, 0);
            }
            inode.cached[offset as usize..end as usize].copy_from_slice(&buf[..len]);
            if len > 0 {
                for sector in offset / SECTOR..=(end - 1) / SECTOR {
                    inode.dirty.insert(sector);
                }
            }
            Ok(len)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with_inode(Call::SyncData, |state, fault| {
            let inode = state.inodes.get_mut(&self.inode).expect("checked");
            let dirty = std::mem::take(&mut inode.dirty);
            match fault {
                None => {
                    for sector in dirty {
                        persist_sector(inode, sector);
                    }
                    inode.durable.truncate(inode.cached.len());
                    Ok(())
                }
                // The writeback failed: Linux marks the pages clean anyway,
                // so the data is in the cache but not on the medium.
                Some(kind) => Err(injected(if kind == FaultKind::ShortWrite { FaultKind::Eio } else { kind })),
            }
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with_inode(Call::Read, |state, _| Ok(state.inodes[&self.inode].cached.len() as u64))
    }

    fn drop_cache(&self) -> io::Result<()> {
        self.with_inode(Call::Read, |state, _| {
            let inode = state.inodes.get_mut(&self.inode).expect("checked");
            // Clean sectors are reloaded from the medium; dirty ones stay.
            let mut reloaded = inode.durable.clone();
            reloaded.resize(inode.cached.len(), 0);
            for &sector in &inode.dirty {
                let start = (sector * SECTOR) as usize;
                let end = (start + SECTOR as usize).min(inode.cached.len());
                if start < end {
                    reloaded[start..end].copy_from_slice(&inode.cached[start..end]);
                }
            }
            inode.cached = reloaded;
            Ok(())
        })
    }
}

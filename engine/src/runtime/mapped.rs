//! Memory-mapped storage for user traffic counters, so that they outlive the process.
//!
//! A kill -9 loses the heap, not the page cache: counters written through a shared file
//! mapping are still in the file when the process is gone, and whoever restarts the engine
//! (the panel) reads the previous run's final values from it before starting a new run. This
//! is how usage stays exactly counted across crashes.
//!
//! ```text
//! offset 0     header (4096 bytes): magic "MZNCTR01" | run id [16] | workers u32 |
//!              record size u32 | records used u64
//! offset 4096  segment 0: SEGMENT_RECORDS records
//!              record: name length u16 | name (<= 126 bytes) | pad to 128 |
//!                      one 128-byte slot per worker: uplink, downlink, opened, closed (u64)
//! then         segment 1, ...  (the file grows a segment at a time; earlier segments are
//!              never remapped, so slot addresses stay valid for the engine's lifetime)
//! ```
//!
//! Each slot is written by one worker thread only, with atomic loads and stores, exactly as
//! the heap counters are (see `counters.rs`).
//!
//! One engine at a time: a running engine holds an exclusive `flock(2)` on its counters file
//! for as long as the file is mapped, and [`CounterFile::create`] fails rather than truncate a
//! file another process holds (its mapping would lose the pages under it: SIGBUS, lost counts).
//! The kernel drops the lock when the holder exits, however it exits, so a crash leaves the
//! file readable and free. [`read`] takes no lock: whoever starts the next run reads first
//! (the panel holds a [`FileLock`] of its own around that and the run).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use memmap2::{MmapMut, MmapOptions};

const MAGIC: &[u8; 8] = b"MZNCTR01";
const HEADER: usize = 4096;
const SLOT: usize = 128;
/// Longest user name stored (longer names are truncated in the file only).
pub const MAX_NAME: usize = 126;
/// Records per segment.
pub const SEGMENT_RECORDS: usize = 1024;

/// One run's counters as left in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The run that wrote them.
    pub run_id: [u8; 16],
    /// Per user: name, uplink, downlink (summed over workers).
    pub users: Vec<(String, u64, u64)>,
}

/// The counter file of a running engine.
pub struct CounterFile {
    /// Also holds the file's lock: released when the last mapping's owner drops it.
    file: File,
    workers: usize,
    record_size: usize,
    header: MmapMut,
    segments: Mutex<Segments>,
}

struct Segments {
    maps: Vec<MmapMut>,
    used: usize,
}

/// Where one user's per-worker slots live in the file.
pub struct MappedSlots {
    ptr: NonNull<u8>,
    workers: usize,
    /// Keeps the mapping alive as long as the slots are used.
    _file: Arc<CounterFile>,
}

// SAFETY: the pointed-to memory is a shared file mapping owned by the `CounterFile` this value
// holds an `Arc` to, so it stays mapped as long as `self` exists; it is only ever accessed
// through atomics, so sharing the pointer across threads is sound.
unsafe impl Send for MappedSlots {}
// SAFETY: as above: all access goes through `AtomicU64`.
unsafe impl Sync for MappedSlots {}

impl MappedSlots {
    /// The counter at `index` (0 uplink, 1 downlink, 2 opened, 3 closed) of worker `worker`.
    pub fn counter(&self, worker: usize, index: usize) -> &AtomicU64 {
        assert!(worker < self.workers && index < 4);
        // SAFETY: the record was allocated with room for `workers` slots of 128 bytes after a
        // 128-byte name block; the mapping is page-aligned and records are multiples of 128
        // bytes, so the address is 8-byte aligned and inside the mapping, which outlives `self`
        // (it is kept alive by `_file`). `AtomicU64` has the same layout as `u64`.
        unsafe {
            let p = self.ptr.as_ptr().add(SLOT + worker * SLOT + index * 8);
            AtomicU64::from_ptr(p.cast::<u64>())
        }
    }
}

impl CounterFile {
    /// Creates (truncating) the counter file for a new run, locked for as long as the
    /// returned value and its mappings live. Fails with [`io::ErrorKind::WouldBlock`], leaving
    /// the file as it is, when another engine holds it.
    pub fn create(path: &Path, workers: usize, run_id: [u8; 16]) -> io::Result<CounterFile> {
        // Not truncated on open: only once the lock says no one else maps it.
        let Some(file) = open_locked(path)? else {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is in use by another engine (another marzneshin on the same data \
                     directory?)",
                    path.display()
                ),
            ));
        };
        file.set_len(0)?;
        file.set_len(HEADER as u64)?;
        // SAFETY: we hold the file's exclusive lock and have just truncated it; every engine
        // takes that lock before mapping the file, so nothing else maps it while we run.
        let mut header = unsafe { MmapOptions::new().len(HEADER).map_mut(&file)? };
        header[..8].copy_from_slice(MAGIC);
        header[8..24].copy_from_slice(&run_id);
        header[24..28].copy_from_slice(&(workers as u32).to_le_bytes());
        let record_size = SLOT * (1 + workers);
        header[28..32].copy_from_slice(&(record_size as u32).to_le_bytes());
        header[32..40].copy_from_slice(&0u64.to_le_bytes());
        Ok(CounterFile {
            file,
            workers,
            record_size,
            header,
            segments: Mutex::new(Segments {
                maps: Vec::new(),
                used: 0,
            }),
        })
    }

    /// Allocates a zeroed record for `name`.
    pub fn allocate(self: &Arc<Self>, name: &str) -> io::Result<MappedSlots> {
        let mut s = self.segments.lock().expect("not poisoned");
        let index = s.used;
        let (segment, slot) = (index / SEGMENT_RECORDS, index % SEGMENT_RECORDS);
        if segment == s.maps.len() {
            let seg_bytes = SEGMENT_RECORDS * self.record_size;
            let offset = HEADER + segment * seg_bytes;
            self.file.set_len((offset + seg_bytes) as u64)?;
            // SAFETY: the range lies inside the file we just extended; the segment is never
            // unmapped or remapped while the `CounterFile` lives.
            let map = unsafe {
                MmapOptions::new()
                    .offset(offset as u64)
                    .len(seg_bytes)
                    .map_mut(&self.file)?
            };
            s.maps.push(map);
        }
        let map = &mut s.maps[segment];
        let rec = &mut map[slot * self.record_size..(slot + 1) * self.record_size];
        let bytes = name.as_bytes();
        let n = bytes.len().min(MAX_NAME);
        rec[..2].copy_from_slice(&(n as u16).to_le_bytes());
        rec[2..2 + n].copy_from_slice(&bytes[..n]);
        let ptr = NonNull::new(rec.as_mut_ptr()).expect("mapping is not null");
        s.used += 1;
        // Publish the count after the record is complete.
        // SAFETY: bytes 32..40 of the page-aligned header mapping, 8-byte aligned, only
        // written here under the segments lock.
        let used =
            unsafe { AtomicU64::from_ptr(self.header.as_ptr().add(32).cast_mut().cast::<u64>()) };
        used.store(s.used as u64, Ordering::Release);
        Ok(MappedSlots {
            ptr,
            workers: self.workers,
            _file: Arc::clone(self),
        })
    }
}

/// An exclusive lock on a file (created if missing), held until dropped; the kernel releases
/// it when the process exits, however it exits. Advisory: it keeps out only those who ask for
/// it too.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock without waiting: `None` when another holder has it (another process,
    /// or another `FileLock` on the same file in this one).
    pub fn try_acquire(path: &Path) -> io::Result<Option<FileLock>> {
        Ok(open_locked(path)?.map(|file| FileLock { _file: file }))
    }
}

/// Opens `path` for reading and writing (created if missing, never truncated) and takes an
/// exclusive `flock(2)` on it without waiting: `None` when another open file description
/// holds one. The lock goes with the returned file's last close.
fn open_locked(path: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Reads the counters a previous run left in `path` (`None` if there is no such file).
pub fn read(path: &Path) -> io::Result<Option<Snapshot>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("counters file: {m}"));
    if data.len() < HEADER || &data[..8] != MAGIC {
        return Err(bad("not a counters file"));
    }
    let mut run_id = [0u8; 16];
    run_id.copy_from_slice(&data[8..24]);
    let workers = u32::from_le_bytes(data[24..28].try_into().expect("4 bytes")) as usize;
    let record_size = u32::from_le_bytes(data[28..32].try_into().expect("4 bytes")) as usize;
    let used = u64::from_le_bytes(data[32..40].try_into().expect("8 bytes")) as usize;
    if record_size != SLOT * (1 + workers) {
        return Err(bad("inconsistent record size"));
    }
    let mut users = Vec::with_capacity(used);
    for i in 0..used {
        let at = HEADER + i * record_size;
        let rec = data
            .get(at..at + record_size)
            .ok_or_else(|| bad("truncated"))?;
        let n = (u16::from_le_bytes([rec[0], rec[1]]) as usize).min(MAX_NAME);
        let name = String::from_utf8_lossy(&rec[2..2 + n]).into_owned();
        let (mut up, mut down) = (0u64, 0u64);
        for w in 0..workers {
            let s = &rec[SLOT + w * SLOT..];
            up += u64::from_ne_bytes(s[..8].try_into().expect("8 bytes"));
            down += u64::from_ne_bytes(s[8..16].try_into().expect("8 bytes"));
        }
        users.push((name, up, down));
    }
    Ok(Some(Snapshot { run_id, users }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters");
        let f = Arc::new(CounterFile::create(&path, 2, [7; 16]).unwrap());
        let mut slots = Vec::new();
        for i in 0..SEGMENT_RECORDS + 3 {
            let s = f.allocate(&format!("user{i}")).unwrap();
            s.counter(0, 0).store(i as u64, Ordering::Relaxed);
            s.counter(1, 1).store(2 * i as u64, Ordering::Relaxed);
            slots.push(s);
        }
        let snap = read(&path).unwrap().unwrap();
        assert_eq!(snap.run_id, [7; 16]);
        assert_eq!(snap.users.len(), SEGMENT_RECORDS + 3);
        assert_eq!(
            snap.users[SEGMENT_RECORDS + 2],
            (format!("user{}", SEGMENT_RECORDS + 2), 1026, 2052)
        );
        assert!(read(&dir.path().join("missing")).unwrap().is_none());
    }

    #[test]
    fn a_second_engine_cannot_take_a_live_counters_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters");
        let live = Arc::new(CounterFile::create(&path, 1, [1; 16]).unwrap());
        let slots = live.allocate("alice").unwrap();
        slots.counter(0, 0).store(100, Ordering::Relaxed);

        let Err(e) = CounterFile::create(&path, 1, [2; 16]) else {
            panic!("a second engine took the live counters file");
        };
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(e.to_string().contains("in use by another engine"), "{e}");
        // The live run's file is untouched and still counts.
        slots.counter(0, 0).store(250, Ordering::Relaxed);
        let snap = read(&path).unwrap().unwrap();
        assert_eq!(snap.run_id, [1; 16]);
        assert_eq!(snap.users, vec![("alice".to_owned(), 250, 0)]);

        // Free once the run's last mapping is gone.
        drop((slots, live));
        let next = CounterFile::create(&path, 1, [3; 16]).unwrap();
        assert!(read(&path).unwrap().unwrap().users.is_empty());
        drop(next);
    }

    #[test]
    fn file_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = FileLock::try_acquire(&path)
            .unwrap()
            .expect("free at first");
        assert!(FileLock::try_acquire(&path).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_acquire(&path).unwrap().is_some());
    }
}

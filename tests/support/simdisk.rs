//! `SimDisk`: an in-memory `Disk` for seeded storage-fault simulation.
//!
//! Every decision comes from one seeded xorshift generator, so a seed replays
//! exactly. The model, kept deliberately small:
//!
//! - A file has *durable* content and a list of *unsynced* operations (writes
//!   and truncations) applied on top of it. `sync` makes them durable.
//! - A directory has *durable* entries and a list of unsynced entry changes
//!   (create, remove, rename, mkdir). `sync_dir` of that directory makes its
//!   entries durable; nothing else does (fsync of a file does not make its
//!   name durable, creating a directory does not make its name in the parent
//!   durable).
//! - `crash()` is a power loss: each file keeps its durable content plus a
//!   random selection of its unsynced operations (none, all, a prefix, a
//!   subset, or a reordered subset), the last applied write torn to a random
//!   prefix; each directory keeps its durable entries plus a random selection
//!   of its unsynced changes. Whatever is no longer reachable from the root is
//!   gone. Handles opened before the crash fail from then on.
//! - Faults: operation N (counting every `Disk`/`DiskFile` call while armed)
//!   or each operation with a given probability fails with EIO, ENOSPC, a
//!   short write (part of the data lands, then the error) or a power cut
//!   (that and every later operation fail until `crash()`). A read may come
//!   back with one bit flipped (bit-rot), which the caller must detect.
//!
//! The simulated tree is rooted at one directory (the appliance's data dir),
//! which exists durably from the start; paths outside it are refused.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use strongroom::disk::{Disk, DiskFile, OpenMode};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// xorshift64* seeded through splitmix64: small, fast, and ours.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        XorShift(z | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Index chosen with the given weights.
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut roll = self.below(weights.iter().sum());
        for (i, &w) in weights.iter().enumerate() {
            if roll < w {
                return i;
            }
            roll -= w;
        }
        unreachable!("roll below the sum of the weights")
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.fill(&mut out);
        out
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Eio,
    Enospc,
    /// On a write: part of the data lands, then this errno. On any other
    /// operation: plain errno.
    ShortWrite(i32),
    /// This and every later operation fail with EIO until `crash()`.
    PowerCut,
}

impl Fault {
    pub const SHORT_ENOSPC: Fault = Fault::ShortWrite(ENOSPC);
    pub const SHORT_EIO: Fault = Fault::ShortWrite(EIO);
}

/// What to inject while armed.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Fail exactly these operations (1-based numbers of armed operations).
    pub fail_at: Vec<(u64, Fault)>,
    /// Fail each armed operation with probability `rate_ppm / 1e6`, the kind
    /// drawn from `kinds`.
    pub rate_ppm: u64,
    pub kinds: Vec<Fault>,
    /// Flip one bit of a read with probability `flip_ppm / 1e6`.
    pub flip_ppm: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SimStats {
    /// Operations counted while armed.
    pub ops: u64,
    pub eio: u64,
    pub enospc: u64,
    pub short_writes: u64,
    pub power_cuts: u64,
    pub bit_flips: u64,
    pub crashes: u64,
    /// Unsynced file operations lost in crashes.
    pub dropped_writes: u64,
    pub torn_writes: u64,
    pub reordered: u64,
    /// Unsynced directory changes lost in crashes.
    pub lost_dir_changes: u64,
}

impl SimStats {
    /// Faults injected, bit flips included.
    pub fn faults(&self) -> u64 {
        self.eio + self.enospc + self.short_writes + self.power_cuts + self.bit_flips
    }

    pub fn add(&mut self, other: &SimStats) {
        self.ops += other.ops;
        self.eio += other.eio;
        self.enospc += other.enospc;
        self.short_writes += other.short_writes;
        self.power_cuts += other.power_cuts;
        self.bit_flips += other.bit_flips;
        self.crashes += other.crashes;
        self.dropped_writes += other.dropped_writes;
        self.torn_writes += other.torn_writes;
        self.reordered += other.reordered;
        self.lost_dir_changes += other.lost_dir_changes;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir(u64),
    File(u64),
}

#[derive(Debug, Clone)]
enum DirChange {
    Add(OsString, Node),
    Remove(OsString),
}

#[derive(Debug, Default)]
struct DirState {
    live: BTreeMap<OsString, Node>,
    durable: BTreeMap<OsString, Node>,
    pending: Vec<DirChange>,
}

#[derive(Debug, Clone)]
enum FileOp {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

impl FileOp {
    fn apply(&self, content: &mut Vec<u8>) {
        match self {
            FileOp::Write(offset, data) => {
                let start = *offset as usize;
                let end = start + data.len();
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[start..end].copy_from_slice(data);
            }
            FileOp::SetLen(len) => content.resize(*len as usize, 0),
        }
    }
}

#[derive(Debug, Default)]
struct FileState {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<FileOp>,
}

const ROOT: u64 = 0;

struct State {
    root: PathBuf,
    rng: XorShift,
    epoch: u64,
    armed: bool,
    plan: FaultPlan,
    power_cut: bool,
    dirs: BTreeMap<u64, DirState>,
    files: BTreeMap<u64, FileState>,
    next_ino: u64,
    stats: SimStats,
    /// The faults injected so far, described (operation number, call, path).
    fault_log: Vec<String>,
}

/// The simulated disk. Cheap to share: clones see the same state.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    epoch: u64,
    writable: bool,
    path: PathBuf,
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

impl SimDisk {
    /// An empty disk whose root directory is `root`, seeded with `seed`.
    pub fn new(seed: u64, root: &Path) -> SimDisk {
        let mut dirs = BTreeMap::new();
        dirs.insert(ROOT, DirState::default());
        SimDisk {
            state: Arc::new(Mutex::new(State {
                root: root.to_owned(),
                rng: XorShift::new(seed ^ 0x5EED_D15C),
                epoch: 0,
                armed: false,
                plan: FaultPlan::default(),
                power_cut: false,
                dirs,
                files: BTreeMap::new(),
                next_ino: 1,
                stats: SimStats::default(),
                fault_log: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("sim disk poisoned")
    }

    pub fn set_plan(&self, plan: FaultPlan) {
        self.lock().plan = plan;
    }

    pub fn plan(&self) -> FaultPlan {
        self.lock().plan.clone()
    }

    /// Reseeds the generator behind crashes, short writes and random faults.
    pub fn reseed(&self, seed: u64) {
        self.lock().rng = XorShift::new(seed ^ 0x5EED_D15C);
    }

    /// While armed, operations are counted and faults injected.
    pub fn arm(&self, armed: bool) {
        self.lock().armed = armed;
    }

    pub fn is_armed(&self) -> bool {
        self.lock().armed
    }

    /// Operations counted so far (while armed).
    pub fn ops(&self) -> u64 {
        self.lock().stats.ops
    }

    pub fn faults(&self) -> u64 {
        self.lock().stats.faults()
    }

    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    pub fn fault_log(&self) -> Vec<String> {
        self.lock().fault_log.clone()
    }

    /// True after a power cut, until `crash()`.
    pub fn power_cut(&self) -> bool {
        self.lock().power_cut
    }

    /// Power loss: see the module documentation.
    pub fn crash(&self) {
        self.lock().crash();
    }

    /// Durable and live views agree and nothing is pending (for tests of the
    /// model itself).
    pub fn pending_ops(&self) -> usize {
        let state = self.lock();
        state.files.values().map(|f| f.pending.len()).sum::<usize>()
            + state.dirs.values().map(|d| d.pending.len()).sum::<usize>()
    }
}

impl State {
    /// Counts an operation and decides its fault. `Ok(Some(short))` asks a
    /// write to land partially and fail with that errno.
    fn begin(&mut self, call: &str, path: &Path) -> io::Result<Option<i32>> {
        if self.power_cut {
            return Err(errno(EIO));
        }
        if !self.armed {
            return Ok(None);
        }
        self.stats.ops += 1;
        let n = self.stats.ops;
        let planned = self
            .plan
            .fail_at
            .iter()
            .find(|(at, _)| *at == n)
            .map(|(_, f)| *f);
        let fault = match planned {
            Some(f) => Some(f),
            None if self.plan.rate_ppm > 0
                && !self.plan.kinds.is_empty()
                && self.rng.chance(self.plan.rate_ppm, 1_000_000) =>
            {
                let i = self.rng.below(self.plan.kinds.len() as u64) as usize;
                Some(self.plan.kinds[i])
            }
            None => None,
        };
        let Some(fault) = fault else {
            return Ok(None);
        };
        let is_write = call == "write_at";
        self.fault_log.push(format!(
            "op {n} {call} {}: {fault:?}",
            path.strip_prefix(&self.root).unwrap_or(path).display()
        ));
        match fault {
            Fault::Eio => {
                self.stats.eio += 1;
                Err(errno(EIO))
            }
            Fault::Enospc => {
                self.stats.enospc += 1;
                Err(errno(ENOSPC))
            }
            Fault::ShortWrite(code) if is_write => {
                self.stats.short_writes += 1;
                Ok(Some(code))
            }
            Fault::ShortWrite(code) => {
                if code == ENOSPC {
                    self.stats.enospc += 1;
                } else {
                    self.stats.eio += 1;
                }
                Err(errno(code))
            }
            Fault::PowerCut => {
                self.stats.power_cuts += 1;
                self.power_cut = true;
                Err(errno(EIO))
            }
        }
    }

    fn components(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let rest = path.strip_prefix(&self.root).map_err(|_| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is outside the simulated disk", path.display()),
            )
        })?;
        rest.components()
            .map(|c| match c {
                Component::Normal(name) => Ok(name.to_owned()),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unsupported path {}", path.display()),
                )),
            })
            .collect()
    }

    fn walk(&self, names: &[OsString], path: &Path) -> io::Result<u64> {
        let mut dir = ROOT;
        for name in names {
            match self.dirs[&dir].live.get(name) {
                Some(Node::Dir(d)) => dir = *d,
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{}: not a directory", path.display()),
                    ));
                }
                None => return Err(not_found(path)),
            }
        }
        Ok(dir)
    }

    /// The parent directory's inode and the entry name.
    fn parent_of(&self, path: &Path) -> io::Result<(u64, OsString)> {
        let mut names = self.components(path)?;
        let name = names
            .pop()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the root has no parent"))?;
        Ok((self.walk(&names, path)?, name))
    }

    fn change(&mut self, dir: u64, change: DirChange) {
        let state = self.dirs.get_mut(&dir).expect("directory exists");
        match &change {
            DirChange::Add(name, node) => {
                state.live.insert(name.clone(), *node);
            }
            DirChange::Remove(name) => {
                state.live.remove(name);
            }
        }
        state.pending.push(change);
    }

    fn new_ino(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    /// Which of `n` unsynced operations survive a crash, in the order they
    /// land.
    fn survivors(&mut self, n: usize) -> Vec<usize> {
        if n == 0 {
            return Vec::new();
        }
        let chosen: Vec<usize> = match self.rng.below(5) {
            0 => Vec::new(),
            1 => (0..n).collect(),
            2 => (0..self.rng.below(n as u64 + 1) as usize).collect(),
            3 => (0..n).filter(|_| self.rng.chance(1, 2)).collect(),
            _ => {
                let mut subset: Vec<usize> = (0..n).filter(|_| self.rng.chance(1, 2)).collect();
                for i in (1..subset.len()).rev() {
                    let j = self.rng.below(i as u64 + 1) as usize;
                    subset.swap(i, j);
                }
                if subset.windows(2).any(|w| w[0] > w[1]) {
                    self.stats.reordered += 1;
                }
                subset
            }
        };
        chosen
    }

    fn crash(&mut self) {
        self.stats.crashes += 1;
        let inos: Vec<u64> = self.files.keys().copied().collect();
        for ino in inos {
            let pending = std::mem::take(&mut self.files.get_mut(&ino).unwrap().pending);
            let keep = self.survivors(pending.len());
            self.stats.dropped_writes += (pending.len() - keep.len()) as u64;
            let file = self.files.get_mut(&ino).unwrap();
            let mut content = std::mem::take(&mut file.durable);
            for (i, &which) in keep.iter().enumerate() {
                let op = &pending[which];
                match op {
                    FileOp::Write(offset, data) if i + 1 == keep.len() && !data.is_empty() => {
                        // The last write to land may be torn.
                        let cut = if self.rng.chance(1, 2) {
                            self.stats.torn_writes += 1;
                            self.rng.below(data.len() as u64) as usize
                        } else {
                            data.len()
                        };
                        FileOp::Write(*offset, data[..cut].to_vec()).apply(&mut content);
                    }
                    other => other.apply(&mut content),
                }
            }
            let file = self.files.get_mut(&ino).unwrap();
            file.live = content.clone();
            file.durable = content;
        }
        let dirs: Vec<u64> = self.dirs.keys().copied().collect();
        for dir in dirs {
            let pending = std::mem::take(&mut self.dirs.get_mut(&dir).unwrap().pending);
            let keep = self.survivors(pending.len());
            self.stats.lost_dir_changes += (pending.len() - keep.len()) as u64;
            for (i, change) in pending.iter().enumerate() {
                if !keep.contains(&i) {
                    let (what, name) = match change {
                        DirChange::Add(name, Node::Dir(_)) => ("mkdir", name),
                        DirChange::Add(name, Node::File(_)) => ("create", name),
                        DirChange::Remove(name) => ("remove", name),
                    };
                    let line = format!(
                        "crash {}: lost unsynced {what} of {:?} in directory #{dir}",
                        self.stats.crashes, name
                    );
                    self.fault_log.push(line);
                }
            }
            let state = self.dirs.get_mut(&dir).unwrap();
            let mut entries = std::mem::take(&mut state.durable);
            for which in keep {
                match &pending[which] {
                    DirChange::Add(name, node) => {
                        entries.insert(name.clone(), *node);
                    }
                    DirChange::Remove(name) => {
                        entries.remove(name);
                    }
                }
            }
            state.live = entries.clone();
            state.durable = entries;
        }
        // Whatever no surviving name reaches is gone.
        let mut reach_dirs = BTreeSet::from([ROOT]);
        let mut reach_files = BTreeSet::new();
        let mut todo = vec![ROOT];
        while let Some(dir) = todo.pop() {
            for node in self.dirs[&dir].durable.values() {
                match *node {
                    Node::Dir(d) => {
                        if reach_dirs.insert(d) {
                            todo.push(d);
                        }
                    }
                    Node::File(f) => {
                        reach_files.insert(f);
                    }
                }
            }
        }
        self.dirs.retain(|ino, _| reach_dirs.contains(ino));
        self.files.retain(|ino, _| reach_files.contains(ino));
        self.epoch += 1;
        self.power_cut = false;
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut state = self.lock();
        state.begin("open", path)?;
        let (dir, name) = state.parent_of(path)?;
        let ino = match (state.dirs[&dir].live.get(&name).copied(), mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: exists", path.display()),
                ));
            }
            (None, OpenMode::CreateNew) => {
                let ino = state.new_ino();
                state.files.insert(ino, FileState::default());
                state.change(dir, DirChange::Add(name, Node::File(ino)));
                ino
            }
            (Some(Node::File(ino)), _) => ino,
            (Some(Node::Dir(_)), _) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{}: is a directory", path.display()),
                ));
            }
            (None, _) => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            ino,
            epoch: state.epoch,
            writable: mode != OpenMode::Read,
            path: path.to_owned(),
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin("remove", path)?;
        let (dir, name) = match state.parent_of(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        };
        match state.dirs[&dir].live.get(&name) {
            None => Ok(()),
            Some(Node::Dir(_)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", path.display()),
            )),
            Some(Node::File(_)) => {
                state.change(dir, DirChange::Remove(name));
                Ok(())
            }
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin("rename", from)?;
        let (from_dir, from_name) = state.parent_of(from)?;
        let (to_dir, to_name) = state.parent_of(to)?;
        let node = *state.dirs[&from_dir]
            .live
            .get(&from_name)
            .ok_or_else(|| not_found(from))?;
        state.change(to_dir, DirChange::Add(to_name, node));
        state.change(from_dir, DirChange::Remove(from_name));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin("sync_dir", dir)?;
        let names = state.components(dir)?;
        let ino = state.walk(&names, dir)?;
        let d = state.dirs.get_mut(&ino).expect("walked to a directory");
        d.durable = d.live.clone();
        d.pending.clear();
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin("create_dir_all", dir)?;
        let names = state.components(dir)?;
        let mut at = ROOT;
        for name in names {
            at = match state.dirs[&at].live.get(&name).copied() {
                Some(Node::Dir(d)) => d,
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{}: a file is in the way", dir.display()),
                    ));
                }
                None => {
                    let ino = state.new_ino();
                    state.dirs.insert(ino, DirState::default());
                    state.change(at, DirChange::Add(name, Node::Dir(ino)));
                    ino
                }
            };
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut state = self.lock();
        state.begin("list", dir)?;
        let names = state.components(dir)?;
        let ino = state.walk(&names, dir)?;
        Ok(state.dirs[&ino]
            .live
            .keys()
            .map(|name| dir.join(name))
            .collect())
    }
}

impl SimFile {
    /// Locks the disk and checks this handle still belongs to the running
    /// "boot" (handles die with a crash).
    fn enter(&self, call: &str) -> io::Result<(MutexGuard<'_, State>, Option<i32>)> {
        let mut state = self.state.lock().expect("sim disk poisoned");
        let short = state.begin(call, &self.path)?;
        if state.epoch != self.epoch {
            return Err(io::Error::other("stale handle from before a crash"));
        }
        Ok((state, short))
    }
}

impl DiskFile for SimFile {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let (mut state, short) = self.enter("write_at")?;
        if !self.writable {
            return Err(errno(9)); // EBADF
        }
        let (data, result) = match short {
            Some(code) => {
                let keep = state.rng.below(data.len() as u64) as usize;
                (&data[..keep], Err(errno(code)))
            }
            None => (data, Ok(())),
        };
        let op = FileOp::Write(offset, data.to_vec());
        let file = state.files.get_mut(&self.ino).expect("open file exists");
        op.apply(&mut file.live);
        file.pending.push(op);
        result
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let (mut state, _) = self.enter("read_at")?;
        let file = &state.files[&self.ino];
        let start = offset as usize;
        let Some(src) = file.live.get(start..start + buf.len()) else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "failed to fill whole buffer",
            ));
        };
        buf.copy_from_slice(src);
        let flip_ppm = state.plan.flip_ppm;
        if state.armed && flip_ppm > 0 && !buf.is_empty() && state.rng.chance(flip_ppm, 1_000_000) {
            let bit = state.rng.below(buf.len() as u64 * 8);
            buf[(bit / 8) as usize] ^= 1 << (bit % 8);
            state.stats.bit_flips += 1;
            let n = state.stats.ops;
            let path = self.path.clone();
            let shown = path
                .strip_prefix(&state.root)
                .unwrap_or(&path)
                .display()
                .to_string();
            state
                .fault_log
                .push(format!("op {n} read_at {shown}: bit {bit} flipped"));
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let (mut state, _) = self.enter("sync")?;
        let file = state.files.get_mut(&self.ino).expect("open file exists");
        file.durable = file.live.clone();
        file.pending.clear();
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let (state, _) = self.enter("size")?;
        Ok(state.files[&self.ino].live.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let (mut state, _) = self.enter("set_len")?;
        if !self.writable {
            return Err(errno(22)); // EINVAL
        }
        let op = FileOp::SetLen(len);
        let file = state.files.get_mut(&self.ino).expect("open file exists");
        op.apply(&mut file.live);
        file.pending.push(op);
        Ok(())
    }
}

//! Export and offline verification. Export copies a consistent, signed
//! snapshot of a live log without writing to it; verify checks such a copy
//! with nothing but the verifier key, the way an auditor would.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::merkle::{Tree, verify_consistency};
use super::note::{Checkpoint, Entry, EntryReader, VerifierKey};
use super::records::{Fault, RecordReader, Step};
use super::{CHECKPOINTS_FILE, Error, PUBLIC_KEY_FILE, RECORDS_FILE, io_error, sync_dir};

/// What [`export`] copied.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Records copied: exactly those the latest checkpoint covers.
    pub records: u64,
    pub checkpoints: u64,
    /// Records in the log after the latest checkpoint, left out because no
    /// checkpoint signs them yet (the appliance signs them within a second).
    pub unsigned: u64,
    pub latest: Checkpoint,
}

/// Copies the records, checkpoints and verifier key of the audit log in
/// `audit_dir` into `out` (created if missing; the three files must not
/// exist in it). Reads only, so it is safe while the appliance appends: the
/// copy ends at the latest complete checkpoint and holds exactly the records
/// it covers, which were on disk before it was written.
pub fn export(audit_dir: &Path, out: &Path) -> Result<Exported, Error> {
    let key_path = audit_dir.join(PUBLIC_KEY_FILE);
    let key_text = fs::read(&key_path).map_err(io_error(&key_path))?;

    // Checkpoints first: every record they cover is already on disk.
    let checkpoints_path = audit_dir.join(CHECKPOINTS_FILE);
    let file = File::open(&checkpoints_path).map_err(io_error(&checkpoints_path))?;
    let mut reader = EntryReader::new(BufReader::new(file));
    let mut count = 0u64;
    let mut end = 0;
    let mut last_note = None;
    loop {
        match reader.next_entry().map_err(io_error(&checkpoints_path))? {
            Entry::Note {
                note,
                end: entry_end,
            } => {
                count += 1;
                end = entry_end;
                last_note = Some(note);
            }
            // A torn entry is one being written right now: stop before it.
            Entry::End | Entry::Torn { .. } => break,
            Entry::Malformed { start, reason } => {
                return Err(Error::CorruptCheckpoint {
                    path: checkpoints_path,
                    number: count,
                    reason: format!("{reason} (at byte {start})"),
                });
            }
        }
    }
    let latest = match last_note.as_deref().map(Checkpoint::parse) {
        Some(Ok(checkpoint)) => checkpoint,
        Some(Err(err)) => {
            return Err(Error::CorruptCheckpoint {
                path: checkpoints_path,
                number: count - 1,
                reason: err.to_string(),
            });
        }
        None => {
            return Err(Error::CorruptCheckpoint {
                path: checkpoints_path,
                number: 0,
                reason: "there is no checkpoint yet, so nothing is signed to export".into(),
            });
        }
    };

    fs::create_dir_all(out).map_err(io_error(out))?;
    let out_checkpoints = out.join(CHECKPOINTS_FILE);
    let source = File::open(&checkpoints_path).map_err(io_error(&checkpoints_path))?;
    copy_prefix(&mut source.take(end), &out_checkpoints)?;

    let records_path = audit_dir.join(RECORDS_FILE);
    let source = File::open(&records_path).map_err(io_error(&records_path))?;
    let mut source = BufReader::new(source);
    let out_records = out.join(RECORDS_FILE);
    let mut sink = create_new(&out_records)?;
    let mut line = Vec::new();
    for index in 0..latest.size() {
        line.clear();
        source
            .read_until(b'\n', &mut line)
            .map_err(io_error(&records_path))?;
        if line.last() != Some(&b'\n') {
            return Err(Error::Corrupt {
                path: records_path,
                index,
                reason: format!(
                    "the latest checkpoint covers {} records but the log holds only {index}",
                    latest.size()
                ),
            });
        }
        sink.write_all(&line).map_err(io_error(&out_records))?;
    }
    finish(sink, &out_records)?;
    let unsigned = count_lines(&mut source).map_err(io_error(&records_path))?;

    let out_key = out.join(PUBLIC_KEY_FILE);
    let mut sink = create_new(&out_key)?;
    sink.write_all(&key_text).map_err(io_error(&out_key))?;
    finish(sink, &out_key)?;
    sync_dir(out)?;

    Ok(Exported {
        records: latest.size(),
        checkpoints: count,
        unsigned,
        latest,
    })
}

/// Complete lines left in `reader`.
fn count_lines(reader: &mut impl BufRead) -> io::Result<u64> {
    let mut lines = 0;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(lines);
        }
        lines += buffer.iter().filter(|&&b| b == b'\n').count() as u64;
        let consumed = buffer.len();
        reader.consume(consumed);
    }
}

fn create_new(path: &Path) -> Result<BufWriter<File>, Error> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(io_error(path))?;
    Ok(BufWriter::new(file))
}

fn copy_prefix(source: &mut impl Read, path: &Path) -> Result<(), Error> {
    let mut sink = create_new(path)?;
    io::copy(source, &mut sink).map_err(io_error(path))?;
    finish(sink, path)
}

fn finish(sink: BufWriter<File>, path: &Path) -> Result<(), Error> {
    let file = sink
        .into_inner()
        .map_err(|err| io_error(path)(err.into_error()))?;
    file.sync_all().map_err(io_error(path))
}

/// The result of [`verify`].
#[derive(Debug, Clone)]
pub struct Verified {
    /// Records read before the first fault (all of them when clean).
    pub records: u64,
    /// Checkpoints whose signature, root and consistency checked out.
    pub checkpoints: u64,
    /// The latest checkpoint that checked out.
    pub latest: Option<Checkpoint>,
    /// The first evidence of tampering, if any.
    pub tampered: Option<Tampered>,
}

/// Where a log stops being trustworthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tampered {
    /// The first record index that cannot be trusted: every record before it
    /// is in order and (if a checkpoint covers it) signed for.
    pub index: u64,
    pub reason: String,
}

impl fmt::Display for Tampered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "first failing index {}: {}", self.index, self.reason)
    }
}

/// Checks the exported log in `dir` (`records` and `checkpoints`) against
/// `key` alone: every record's form, index and chain; every checkpoint's
/// signature; each checkpoint's root against the tree rebuilt from the
/// records; consistency between consecutive checkpoints; and that the
/// latest checkpoint covers every record. Stops at the first failure.
///
/// Tampering is an `Ok` with [`Verified::tampered`] set; `Err` means the
/// check itself could not run (a missing or unreadable file).
pub fn verify(dir: &Path, key: &VerifierKey) -> Result<Verified, Error> {
    let records_path = dir.join(RECORDS_FILE);
    let checkpoints_path = dir.join(CHECKPOINTS_FILE);
    let records = File::open(&records_path).map_err(io_error(&records_path))?;
    let checkpoints = File::open(&checkpoints_path).map_err(io_error(&checkpoints_path))?;

    // Pass 1: the records, up to the first fault.
    let mut reader = RecordReader::new(BufReader::new(records));
    let mut leaves = Vec::new();
    let fault: Option<Fault> = loop {
        match reader.next_step().map_err(io_error(&records_path))? {
            Step::Record(leaf) => leaves.push(leaf),
            Step::End => break None,
            Step::Fault(fault) => break Some(fault),
        }
    };
    // A broken link blames the record before the one that found it.
    if let Some(fault) = &fault {
        leaves.truncate(fault.index as usize);
    }
    let mut tree = Tree::new();
    for leaf in &leaves {
        tree.push(*leaf);
    }
    drop(leaves);

    // Pass 2: the checkpoints, against that tree.
    let mut verified = Verified {
        records: tree.size(),
        checkpoints: 0,
        latest: None,
        tampered: None,
    };
    let mut entries = EntryReader::new(BufReader::new(checkpoints));
    let mut number = 0u64;
    loop {
        // Records before this are vouched for by the latest good checkpoint.
        let vouched = verified.latest.as_ref().map_or(0, Checkpoint::size);
        let tampered = |index: u64, reason: String| Some(Tampered { index, reason });
        let checkpoint = match entries.next_entry().map_err(io_error(&checkpoints_path))? {
            Entry::Note { note, .. } => match Checkpoint::open(&note, key) {
                Ok(checkpoint) => checkpoint,
                Err(err) => {
                    let size = Checkpoint::parse(&note)
                        .map(|c| format!(" (tree size {})", c.size()))
                        .unwrap_or_default();
                    verified.tampered =
                        tampered(vouched, format!("checkpoint {number}{size}: {err}"));
                    return Ok(verified);
                }
            },
            Entry::End => break,
            Entry::Torn { .. } => {
                let reason = format!("checkpoint {number} is incomplete: the file ends inside it");
                verified.tampered = tampered(vouched, reason);
                return Ok(verified);
            }
            Entry::Malformed { start, reason } => {
                let reason = format!("checkpoint {number} (at byte {start}): {reason}");
                verified.tampered = tampered(vouched, reason);
                return Ok(verified);
            }
        };
        let size = checkpoint.size();
        if let Some(previous) = &verified.latest
            && size < previous.size()
        {
            let reason = format!(
                "checkpoint {number} has tree size {size}, smaller than checkpoint {}'s {}: \
                 checkpoints were removed or reordered",
                number - 1,
                previous.size()
            );
            verified.tampered = tampered(size, reason);
            return Ok(verified);
        }
        if size > tree.size() {
            verified.tampered = match &fault {
                Some(fault) => tampered(fault.index, fault.to_string()),
                None => tampered(
                    tree.size(),
                    format!(
                        "checkpoint {number} covers {size} records but the log holds only {}: \
                         records were removed from the end",
                        tree.size()
                    ),
                ),
            };
            return Ok(verified);
        }
        if tree.root(size) != *checkpoint.root() {
            let reason = format!(
                "records {vouched} to {} do not hash to the root signed in checkpoint {number} \
                 (tree size {size}): a record in that range was altered, added or removed",
                size.saturating_sub(1)
            );
            verified.tampered = tampered(vouched, reason);
            return Ok(verified);
        }
        if let Some(previous) = &verified.latest {
            let consistent = tree
                .consistency_proof(previous.size(), size)
                .is_some_and(|proof| {
                    verify_consistency(
                        previous.size(),
                        size,
                        previous.root(),
                        checkpoint.root(),
                        &proof,
                    )
                });
            if !consistent {
                let reason = format!(
                    "checkpoint {number} (tree size {size}) is not consistent with checkpoint {} \
                     (tree size {})",
                    number - 1,
                    previous.size()
                );
                verified.tampered = tampered(vouched, reason);
                return Ok(verified);
            }
        }
        verified.latest = Some(checkpoint);
        verified.checkpoints += 1;
        number += 1;
    }

    let vouched = verified.latest.as_ref().map_or(0, Checkpoint::size);
    verified.tampered = if let Some(fault) = fault {
        Some(Tampered {
            index: fault.index,
            reason: fault.to_string(),
        })
    } else if verified.latest.is_none() {
        Some(Tampered {
            index: 0,
            reason: format!("no checkpoint signed by {}", key.id()),
        })
    } else if tree.size() > vouched {
        Some(Tampered {
            index: vouched,
            reason: format!(
                "records {vouched} to {} are not covered by any checkpoint \
                 (an export holds only signed records)",
                tree.size() - 1
            ),
        })
    } else {
        None
    };
    Ok(verified)
}
